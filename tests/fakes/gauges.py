"""Probes: open fds, threads, memory, a leak check, waiting for a condition, and a task that
proves the event loop is not blocked."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.fakes.session import existing_scope


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def threads_now() -> set[threading.Thread]:
    return set(threading.enumerate())


def wait_until(predicate: object, timeout: float = 10.0, interval: float = 0.01) -> bool:
    """True as soon as ``predicate()`` is; its last answer once ``timeout`` seconds passed."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@contextmanager
def leaves_nothing_behind() -> Iterator[None]:
    """Fails unless the block ends with no monitoring, no new thread and no new fd."""
    threads, fds = set(threading.enumerate()), open_fds()
    yield
    scope = existing_scope()
    assert scope is None or not scope.is_monitoring
    assert set(threading.enumerate()) == threads
    assert open_fds() == fds


class Ticker:
    """A task counting how often the event loop gets to run it: proof the loop is not blocked."""

    def __init__(self, interval: float = 0.0) -> None:
        self.ticks = 0
        self._task = asyncio.create_task(self._run(interval))

    async def _run(self, interval: float) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(interval)

    def cancel(self) -> None:
        self._task.cancel()
