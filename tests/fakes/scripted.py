"""A kernel source the test drives by hand, and synthetic items to feed it."""

from __future__ import annotations

import threading

from procobsrv import EventKind, QueuedItem
from procobsrv.host import current_platform
from procobsrv.platform import Batch, KernelSource


class ScriptedSource(KernelSource):
    """A publisher the test drives by hand: ``publish`` plays the kernel's part."""

    def __init__(self) -> None:
        self.platform = current_platform()
        self.ready = self.platform.new_event()
        self._lock = threading.Lock()
        self._pending: list[QueuedItem] = []
        self._lost = 0
        self.opened = self.closed = 0

    def open(self) -> None:
        self.opened += 1

    @property
    def wait_handle(self) -> int:
        return self.ready.wait_handle

    def publish(self, items: list[QueuedItem], lost: int = 0) -> None:
        with self._lock:
            self._pending.extend(items)
            self._lost += lost
            self.ready.set()

    def fetch_batch(self) -> Batch:
        with self._lock:
            batch = Batch(self._pending, self._lost)
            self._pending, self._lost = [], 0
            self.ready.clear()
        return batch

    def close(self) -> None:
        self.closed += 1
        self.ready.close()


def items(n: int, start: int = 1) -> list[QueuedItem]:
    return [QueuedItem(EventKind.CREATED, pid, 1, 0.0) for pid in range(start, start + n)]


class FailingSource(ScriptedSource):
    """Delivers what was published, then fails as a kernel source can (driver gone, EBADF)."""

    def __init__(self) -> None:
        super().__init__()
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        with self._lock:
            self.error = error
            self.ready.set()

    def fetch_batch(self) -> Batch:
        with self._lock:
            if self.error is not None and not self._pending:
                raise self.error
        batch = super().fetch_batch()
        if self.error is not None:
            self.ready.set()  # the failure is news too
        return batch


def item(
    kind: EventKind,
    pid: int,
    ppid: int = 1,
    start_ns: int = 0,
    at_ns: int = 0,
    **fields: object,
) -> QueuedItem:
    return QueuedItem(kind, pid, ppid, at_ns / 1e9, at_ns, start_ns=start_ns, **fields)  # type: ignore[arg-type]
