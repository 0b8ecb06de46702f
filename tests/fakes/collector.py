"""A handler that records every event; tests wait for the ones they expect."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from procobsrv import CallbackHandler, EventKind, QueuedItem


class Collector(CallbackHandler):
    """Records every event; tests wait for the ones they expect."""

    def __init__(self) -> None:
        self.items: list[QueuedItem] = []
        self.lost = 0
        self.params: list[Any] = []
        self.errors: list[BaseException] = []
        self._changed = threading.Condition()

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        with self._changed:
            self.items.append(item)
            self.params.append(param)
            self._changed.notify_all()

    def on_events_lost(self, count: int, param: Any) -> None:
        with self._changed:
            self.lost += count
            self._changed.notify_all()

    def on_error(self, error: BaseException, param: Any) -> None:
        with self._changed:
            self.errors.append(error)
            self._changed.notify_all()

    def of(self, pids: int | set[int], kind: EventKind | None = None) -> list[QueuedItem]:
        wanted = {pids} if isinstance(pids, int) else pids
        with self._changed:
            return [i for i in self.items if i.process_id in wanted and kind in (None, i.kind)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def wait_exit(self, pid: int, timeout: float = 10.0) -> QueuedItem:
        assert self.wait_for(lambda: bool(self.of(pid, EventKind.EXITED)), timeout), (
            f"no EXITED event for pid {pid}; saw {self.of(pid)}"
        )
        return self.of(pid, EventKind.EXITED)[0]


class Blocking(Collector):
    """A Collector that blocks in ``on_process_event`` until ``release`` is set (``timeout``
    seconds at most; None: for ever); ``inside`` tells that it got there.

    ``first_only``: blocks on the first event only (a consumer that stopped consuming once);
    ``record_first``: records the event before blocking, not after.
    """

    def __init__(
        self, timeout: float | None = None, *, first_only: bool = False, record_first: bool = False
    ) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.release = threading.Event()
        self._timeout, self._first_only, self._record_first = timeout, first_only, record_first

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        if self._record_first:
            super().on_process_event(item, param)
        if not (self._first_only and self.inside.is_set()):
            self.inside.set()
            self.release.wait(self._timeout)
        if not self._record_first:
            super().on_process_event(item, param)
