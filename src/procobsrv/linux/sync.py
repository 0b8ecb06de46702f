"""Linux kernel objects for the framework: counterparts of Win32 events and WaitForMultipleObjects.

An event is an eventfd, so a thread can wait on it together with the netlink socket in one
``poll``: the monitor thread sleeps until either the kernel has news or it is told to stop.
"""

from __future__ import annotations

import math
import os
import select
import threading
from collections.abc import Sequence


class EventFd:
    """A manual-reset event on an eventfd: readable (signalled) from ``set`` until ``clear``."""

    def __init__(self) -> None:
        self._fd: int = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    @property
    def wait_handle(self) -> int:
        return self._fd

    def set(self) -> None:
        os.eventfd_write(self._fd, 1)

    def clear(self) -> None:
        try:
            os.eventfd_read(self._fd)  # resets the counter to 0
        except BlockingIOError:
            pass  # was not set

    def is_set(self) -> bool:
        return is_readable(self._fd, 0.0)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def is_readable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` is (or within ``timeout`` seconds becomes) readable. ``poll``, not
    ``select``: select cannot take fd numbers of FD_SETSIZE (1024) and above."""
    waiter = select.poll()
    waiter.register(fd, select.POLLIN)
    return bool(waiter.poll(max(0, math.ceil(timeout * 1000))))


class Lock:
    """The mutex: a plain thread lock (Linux needs no kernel object for it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> Lock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def close(self) -> None:
        pass


class PollWaiter:
    """Waits for the first readable fd of a set, like WaitForMultipleObjects(bWaitAll=FALSE)."""

    def __init__(self, fds: Sequence[int]) -> None:
        self._index = {fd: i for i, fd in enumerate(fds)}
        self._poll = select.poll()
        for fd in fds:
            self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float | None = None) -> int | None:
        millis = None if timeout is None else max(0, int(timeout * 1000))
        events = self._poll.poll(millis)
        if not events:
            return None
        # Lowest index wins, as with WaitForMultipleObjects: callers list shutdown first.
        return min(self._index[fd] for fd, _ in events)

    def close(self) -> None:
        for fd in self._index:
            try:
                self._poll.unregister(fd)
            except (KeyError, ValueError):
                pass
