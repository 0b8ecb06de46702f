"""The article's RetrievalThread: drains the QueueContainer and hands each batch on.

In the article it called the one CallbackHandler. Here it hands each batch to every
subscriber attached to the scope (the fan-out). With one handler alone that is the
article's design exactly: the handler is called on this thread. With several, each offer
puts the batch into a subscriber's window and returns, so this thread never waits for a
handler, however slow.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from .container import QueueContainer
from .events import QueuedItem
from .platform import Platform
from .threads import CustomThread

log = logging.getLogger(__name__)


class Subscriber(Protocol):
    """What the retrieval thread hands batches to (a Subscription)."""

    def offer(self, items: Sequence[QueuedItem], nbytes: int, lost: int) -> None: ...


class RetrievalThread(CustomThread):
    """Waits on {shutdown, element-available}; offers each drained batch (CHUNK events at
    most), in order, to every subscriber.

    On shutdown what is still queued is handed on first. If the monitor failed, what was
    queued is handed on, then ``on_failure`` is called with the error.
    """

    def __init__(self, platform: Platform, container: QueueContainer) -> None:
        super().__init__(platform, "procobsrv-retrieval")
        self.container = container
        #: Who gets the batches; replaced as a whole (never changed in place) by the session.
        self.subscribers: tuple[Subscriber, ...] = ()
        #: Events taken from the queue and handed to the subscribers.
        self.received = 0
        #: Called on this thread, with the error, when the monitor has failed.
        self.on_failure: Callable[[BaseException], None] | None = None
        # Held while this thread uses the queue or its waiter (never while it calls a
        # subscriber): cut_off() takes it to release them under a late handler.
        self._gate = threading.Lock()
        self._cut_off = False

    def run(self) -> None:
        container, gate = self.container, self._gate
        waiter = self.platform.new_waiter(
            [self.shutdown.wait_handle, container.element_available.wait_handle]
        )
        try:
            while True:
                with gate:  # (the wait blocks only until shutdown, which cut_off follows)
                    if self._cut_off or waiter.wait() == 0:
                        break
                if not self._dispatch():
                    return
                if container.failure is not None:
                    # The monitor failed after its last append: hand that on, then the news.
                    while self._dispatch(all_of_it=True):
                        pass
                    if self.on_failure is not None and not self._cut_off:
                        self.on_failure(container.failure)
                    return
            while self._dispatch(all_of_it=True):  # the monitor has stopped: the rest
                pass
        finally:
            with gate:
                if not self._cut_off:
                    waiter.close()

    def _dispatch(self, all_of_it: bool = False) -> bool:
        """Offer the next batch; False when cut off, or (``all_of_it``) nothing was left."""
        with self._gate:
            if self._cut_off:
                return False
            items, lost, nbytes = self.container.drain()
        if items or lost:
            self.received += len(items)
            for subscriber in self.subscribers:
                subscriber.offer(items, nbytes, lost)
        with self._gate:
            if self._cut_off:
                return False
            self.container.done()
        return bool(items or lost) or not all_of_it

    def cut_off(self, release: Callable[[], None]) -> None:
        """From another thread, while this one still calls a subscriber (a lone handler)
        after its stop's time ran out: run ``release`` (which closes the queue and this
        thread's shutdown event) now. This thread touches them no more and ends as soon as
        the handler returns."""
        with self._gate:
            self._cut_off = True
            release()
