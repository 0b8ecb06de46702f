"""The article's RetrievalThread: drains the QueueContainer into the user's CallbackHandler."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from .container import QueueContainer
from .events import EventKind
from .handler import CallbackHandler
from .platform import Platform
from .threads import CustomThread

log = logging.getLogger(__name__)


class RetrievalThread(CustomThread):
    """Waits on {shutdown, element-available}; delivers each drained batch in order.

    A handler that raises is logged with its event and counted; delivery goes on. On
    shutdown everything still queued is delivered first, unless the stop was asked from
    inside the handler (``abandon``), where waiting for the rest would be surprising. If
    the monitor failed, the handler gets what was queued, the session ends, then the
    handler gets ``on_error``.
    """

    def __init__(
        self, platform: Platform, container: QueueContainer, handler: CallbackHandler, param: Any
    ) -> None:
        super().__init__(platform, "procobsrv-retrieval")
        self.container = container
        self.handler = handler
        self.param = param
        self.delivered: Counter[EventKind] = Counter()
        self.lost_reported = 0
        self.handler_errors = 0
        self._abandoned = False
        #: Called on this thread when the monitor has failed, before the handler hears of it.
        self.on_failure: Callable[[], None] | None = None

    def abandon(self) -> None:
        """Stop delivering at once (stop_monitoring() called from inside the handler)."""
        self._abandoned = True
        self.shutdown.set()

    def run(self) -> None:
        container = self.container
        waiter = self.platform.new_waiter(
            [self.shutdown.wait_handle, container.element_available.wait_handle]
        )
        try:
            while waiter.wait() != 0 and not self._abandoned:
                self._deliver(*container.drain())
                if container.failure is not None:
                    # The monitor failed after its last append: deliver that, then the news.
                    self._deliver(*container.drain())
                    self._report_failure(container.failure)
                    return
            if not self._abandoned:
                self._deliver(*container.drain())  # the monitor has stopped: this is the rest
        finally:
            waiter.close()

    def _report_failure(self, error: BaseException) -> None:
        # End the session first, so that the handler may start monitoring again from on_error.
        stopped_by_handler = self._abandoned
        if self.on_failure is not None:
            self.on_failure()
        if stopped_by_handler:
            return
        try:
            self.handler.on_error(error, self.param)
        except Exception:
            self.handler_errors += 1
            log.exception("on_error(%r) raised", error)

    def _deliver(self, items: Any, lost: int) -> None:
        handler, param = self.handler, self.param
        if lost:
            self.lost_reported += lost
            try:
                handler.on_events_lost(lost, param)
            except Exception:
                self.handler_errors += 1
                log.exception("on_events_lost(%d) raised; delivery goes on", lost)
        delivered = self.delivered
        on_event = handler.on_process_event
        for item in items:
            if self._abandoned:
                return
            try:
                on_event(item, param)
            except Exception:
                self.handler_errors += 1
                log.exception("on_process_event raised on %r; delivery goes on", item)
            delivered[item.kind] += 1
