"""The article's RetrievalThread: drains the QueueContainer and hands each batch on.

In the article it called the one CallbackHandler; here it hands each batch to every
subscriber attached to the scope (the fan-out), which is a few non-blocking offers, so
this thread never waits for a handler, however slow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .container import QueueContainer
from .events import QueuedItem
from .platform import Platform
from .subscription import Subscription, cut
from .threads import CustomThread

log = logging.getLogger(__name__)


class RetrievalThread(CustomThread):
    """Waits on {shutdown, element-available}; offers each drained batch, in order, to
    every subscriber.

    On shutdown what is still queued is handed on first. If the monitor failed, what was
    queued is handed on, then ``on_failure`` ends the session (and tells the subscribers).
    """

    def __init__(self, platform: Platform, container: QueueContainer) -> None:
        super().__init__(platform, "procobsrv-retrieval")
        self.container = container
        #: Who gets the batches; replaced as a whole (never changed in place) by the scope.
        self.subscribers: tuple[Subscription, ...] = ()
        #: Events taken from the queue and handed to the subscribers.
        self.received = 0
        #: Called on this thread, with the error, when the monitor has failed.
        self.on_failure: Callable[[BaseException], None] | None = None

    def run(self) -> None:
        container = self.container
        waiter = self.platform.new_waiter(
            [self.shutdown.wait_handle, container.element_available.wait_handle]
        )
        try:
            while waiter.wait() != 0:
                self._dispatch(*container.drain())
                if container.failure is not None:
                    # The monitor failed after its last append: hand that on, then the news.
                    self._dispatch(*container.drain())
                    if self.on_failure is not None:
                        self.on_failure(container.failure)
                    return
            self._dispatch(*container.drain())  # the monitor has stopped: this is the rest
        finally:
            waiter.close()

    def _dispatch(self, items: list[QueuedItem], lost: int) -> None:
        if items or lost:
            count = len(items)
            self.received += count
            parts = cut(items)  # once: every subscriber shares the same parts
            backlog = len(self.container)  # arrived since the drain: held for everyone
            for subscriber in self.subscribers:
                subscriber.offer(parts, count, lost, backlog)
