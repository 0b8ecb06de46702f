"""Linux kernel objects for the framework: counterparts of Win32 events and WaitForMultipleObjects.

An event is an eventfd, so a thread can wait on it together with the netlink socket in one
``poll``: the monitor thread sleeps until either the kernel has news or it is told to stop.
"""

from __future__ import annotations

import errno
import math
import os
import resource
import select
import threading
from collections.abc import Sequence

from ..errors import MonitorError


class EventFd:
    """A manual-reset event on an eventfd: readable (signalled) from ``set`` until ``clear``."""

    def __init__(self) -> None:
        try:
            self._fd: int = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError as exc:
            if exc.errno in NO_FDS:
                raise out_of_fds("an eventfd", exc) from exc
            raise

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


#: errno values that mean "no file descriptor left": this process's limit, or the system's.
NO_FDS = (errno.EMFILE, errno.ENFILE)


class OutOfFds(MonitorError):
    """Monitoring cannot start: no file descriptor was left (every source would fail alike,
    so "auto" does not fall back on this one)."""


def out_of_fds(what: str, exc: OSError) -> OutOfFds:
    """The MonitorError for creating ``what`` failed with EMFILE or ENFILE: which limit ran
    out and how to raise it."""
    if exc.errno == errno.ENFILE:
        limit = "the system's file table is full: raise fs.file-max (sysctl) or close files"
    else:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limit = (
            f"this process has used all its file descriptors (soft limit {soft}): raise it "
            "with `ulimit -n` (e.g. `ulimit -n 4096`), LimitNOFILE= in a systemd unit, or "
            "setrlimit(RLIMIT_NOFILE), or close files the program no longer needs"
        )
    return OutOfFds(f"cannot create {what} to monitor processes ({exc.strerror}): {limit}")


_MS_PER_S = 1000  # poll() takes milliseconds


def is_readable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` is (or within ``timeout`` seconds becomes) readable. ``poll``, not
    ``select``: select cannot take fd numbers of FD_SETSIZE (1024) and above."""
    waiter = select.poll()
    waiter.register(fd, select.POLLIN)
    return bool(waiter.poll(max(0, math.ceil(timeout * _MS_PER_S))))


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
        millis = None if timeout is None else max(0, int(timeout * _MS_PER_S))
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
