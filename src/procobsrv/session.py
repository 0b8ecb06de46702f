"""One kernel subscription: the source, the QueueContainer and the two threads around it,
and the subscribers it feeds. The scope runs one while any subscriber is attached."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from .bounded import Bounds
from .container import QueueContainer
from .errors import MonitorError
from .platform import KernelSource, Platform
from .process_monitor import ProcessThreadMonitor
from .retrieval import RetrievalThread
from .stats import MonitorStats, summed
from .subscription import HandlerSubscription, Subscription

log = logging.getLogger(__name__)


class Session:
    """The kernel side, from ``start`` to ``stop``: ProcessThreadMonitor -> QueueContainer
    -> RetrievalThread -> the subscribers."""

    def __init__(
        self,
        platform: Platform,
        source: KernelSource,
        bounds: Bounds,
    ) -> None:
        self.platform = platform
        self.source = source
        # Each part holds kernel objects (eventfds, events): if a later one cannot be made
        # (no fds left), release the earlier ones rather than leak them.
        with contextlib.ExitStack() as undo:
            self.container = QueueContainer(
                platform, bounds.limit, bounds.policy, bounds.byte_limit
            )
            undo.callback(self.container.close)
            self.retrieval = RetrievalThread(platform, self.container)
            undo.callback(self.retrieval.close)
            self.monitor = ProcessThreadMonitor(platform, source, self.container)
            undo.pop_all()
        self.retrieval.on_failure = self._failed
        #: Called (on the retrieval thread) when the monitor failed, before the session
        #: ends: the scope forgets it.
        self.on_failure: Callable[[Session], None] | None = None
        self.stopped = threading.Event()
        self.stop_error: BaseException | None = None
        #: Every subscriber the session had, until its counts are folded into ``_done``.
        self.members: list[Subscription] = []
        self._done: list[MonitorStats] = []
        self._stopping = False
        self._released = False
        self._attached: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()

    @property
    def subscribers(self) -> tuple[Subscription, ...]:
        """Attached now, in the order they attached (what the retrieval thread offers to)."""
        return self._attached

    def _offer_to(self, subscribers: tuple[Subscription, ...]) -> None:
        self._attached = self.retrieval.subscribers = subscribers

    def start(self) -> None:
        self.retrieval.start()
        self.monitor.start()

    def join(self, subscriber: Subscription) -> None:
        """Attach (the subscriber gets every batch drained from now on). A handler alone is
        called by the retrieval thread itself; as soon as there are two subscribers, every
        handler gets a thread of its own, so that none can delay another."""
        base, container = self.container.overflowed, self.container
        subscriber.overflow_base = lambda: container.overflowed - base
        with self._lock:
            self.members.append(subscriber)
        others = self._attached
        for other in others:
            if isinstance(other, HandlerSubscription):
                other.use_own_thread(self.platform)
        if isinstance(subscriber, HandlerSubscription):
            if others:
                subscriber.use_own_thread(self.platform)
            else:
                subscriber.deliver_on(self.retrieval, self._queued)
        self._offer_to((*others, subscriber))

    def _queued(self) -> tuple[int, int]:
        return len(self.container), self.container.held_bytes

    def leave(self, subscriber: Subscription) -> bool:
        """Detach; True if it was the last (it then gets what the session still hands on,
        and the kernel queue's overflow until the end is still its own)."""
        rest = tuple(s for s in self._attached if s is not subscriber)
        if rest:
            frozen = subscriber.overflow_base()
            subscriber.overflow_base = lambda: frozen
            self._offer_to(rest)
            if len(rest) == 1 and isinstance(rest[0], HandlerSubscription):
                # Alone again: no one to protect, so no hop (mirrors join).
                rest[0].deliver_on_when_drained(self.retrieval, self._queued)
        return not rest

    def fold(self, subscriber: Subscription) -> None:
        """The subscriber has ended: keep its final counts."""
        with self._lock:
            if subscriber in self.members:
                self.members.remove(subscriber)
                self._done.append(subscriber.stats())

    def stop(self, timeout: float | None = None) -> None:
        """Monitor first (nothing new is queued), then the kernel, then hand on the rest.

        Every step runs whatever an earlier one raised; a failure is logged and kept in
        ``stop_error``. Once only: a second caller waits for the first. ``timeout`` bounds
        the wait for the retrieval thread, which may be running a lone handler: if it has
        not ended by then, it releases the kernel objects on its way out.
        """
        with self._lock:
            first, self._stopping = not self._stopping, True
        if not first:
            if not self.retrieval.is_current():
                self.stopped.wait()
            return
        try:
            self._step("stopping the monitor thread", self.monitor.stop)
            self._step("closing the kernel source", self.source.close)
            self.retrieval.shutdown.set()
            if self.retrieval.is_current():
                # From a handler it calls, or the monitor failed: it cannot wait for itself,
                # and releases the queue and its own event on its way out.
                self.retrieval.on_exit = self._release
            elif self.retrieval.join(timeout):
                self._release()
            else:  # a lone handler it calls has not returned in time: release under it
                self.retrieval.cut_off(self._release)
        finally:
            self._offer_to(())
            self.stopped.set()

    def _failed(self, error: BaseException) -> None:
        """The monitor failed (on the retrieval thread, after what was queued was handed
        on): end, then tell every subscriber, after what is held for it."""
        subscribers = self._attached
        if self.on_failure is not None:
            self.on_failure(self)
        self.stop()
        for subscription in subscribers:
            subscription.fail(error)
        log.info("monitoring stopped after a failure: %s", error)

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._step("releasing the monitor", self.monitor.close)
        self._step("releasing the retrieval thread", self.retrieval.close)
        self._step("releasing the queue", self.container.close)

    def _step(self, what: str, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:
            log.error("%s failed; the rest of the stop went on", what, exc_info=exc)
            if self.stop_error is None:
                self.stop_error = exc

    def stats(self) -> MonitorStats:
        with self._lock:
            members = list(self.members)
            parts = self._done + [s.stats() for s in members]
        container = self.container
        return summed(
            parts,
            queued=len(container) + sum(s.window.held for s in members),
            queued_bytes=container.held_bytes + sum(s.window.held_bytes for s in members),
            error=container.failure,
            received=self.retrieval.received,
            subscribers=len(self._attached),
            stop_error=self.stop_error,
        )

    def handles(self) -> list[int]:
        """The session's wait handles: what a forked child inherits of it."""
        handles = [
            self.monitor.shutdown.wait_handle,
            self.retrieval.shutdown.wait_handle,
            self.container.element_available.wait_handle,
        ]
        try:
            handles.append(self.source.wait_handle)
        except MonitorError:
            pass
        return [h for h in handles if isinstance(h, int) and h >= 0]

    def forget_after_fork(self) -> None:
        """In a forked child: the threads did not come along; silence what may survive of
        the subscribers and release the handles inherited from the parent."""
        for subscription in self.members:
            subscription.forget_after_fork()
        self.platform.close_inherited(self.handles())
