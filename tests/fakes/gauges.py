"""What the surface tests share: a leak check and a synthetic-item factory."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from procobsrv import ApplicationScope, EventKind, QueuedItem


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@contextmanager
def leaves_nothing_behind() -> Iterator[None]:
    """Fails unless the block ends with no monitoring, no new thread and no new fd."""
    threads, fds = set(threading.enumerate()), open_fds()
    yield
    scope = ApplicationScope._instance
    assert scope is None or not scope.is_monitoring
    assert set(threading.enumerate()) == threads
    assert open_fds() == fds


def item(
    kind: EventKind,
    pid: int,
    ppid: int = 1,
    start_ns: int = 0,
    at_ns: int = 0,
    **fields: object,
) -> QueuedItem:
    return QueuedItem(kind, pid, ppid, at_ns / 1e9, at_ns, start_ns=start_ns, **fields)  # type: ignore[arg-type]


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
