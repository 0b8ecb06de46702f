"""Fan-out: one subscriber of the scope's events, with its own window, counts and delivery.

The RetrievalThread drains the one QueueContainer and *offers* each batch to every
subscriber. An offer never waits: it puts the batch (cut once into parts of at most CHUNK
events, the same part objects for every subscriber, never changed) into the subscriber's
bounded window, making room by the subscriber's own overflow policy and counting what it
gave up. A handler's subscription
then delivers from its window on a thread of its own; a stream's consumer takes from the
window itself. So a slow or stuck subscriber loses its own events, counted, and never
delays, drops or reorders another's; every subscriber sees the batches in the one order
the queue had them.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .callback import CallbackHandler
from .container import OverflowPolicy
from .events import EventKind, QueuedItem

if TYPE_CHECKING:
    from .scope import ApplicationScope, MonitorStats

log = logging.getLogger(__name__)

#: A consumer takes at most this many events at a time from its window: what it is
#: working on cannot be dropped, so this bounds how much stale history DROP_OLDEST can
#: still deliver after a stall (the rest of the window is dropped oldest first).
CHUNK = 256

#: How long stop_monitoring() / Subscription.close() wait, by default, for a handler to be
#: given what its window holds; a handler still running then is called no more (and logged).
DEFAULT_STOP_TIMEOUT = 10.0

#: A handler method that keeps raising the same exception: the first is logged with its
#: traceback, then one summary line per this many repeats, and one when delivery ends.
ERROR_SUMMARY_EVERY = 10_000


class _State(enum.Enum):
    OPEN = "open"  # taking offers
    DRAINING = "draining"  # no more offers: deliver what the window holds, then end
    ABANDONED = "abandoned"  # deliver nothing more, not even what the window holds


class Subscription:
    """One consumer of the process-wide scope: returned by ``ApplicationScope.subscribe``.

    Close it (``close()``, or leave ``with scope.subscribe(handler) as sub:``) to detach;
    the last subscription to leave releases the kernel side. ``lost`` and ``stats()`` are
    this subscriber's own: kernel losses it was told of, plus what its own window dropped
    because it fell behind.
    """

    def __init__(
        self, scope: ApplicationScope, name: str, param: Any, limit: int, policy: OverflowPolicy
    ) -> None:
        if limit < 1:
            raise ValueError("queue limit must be at least 1")
        self.name = name
        self.param = param
        self.limit = limit
        self.policy = policy
        #: Called (on the retrieval thread, outside any lock) when the window stops being
        #: empty or the subscription ends: how a consumer on an event loop is woken.
        self.wake: Callable[[], None] | None = None
        self._scope = scope
        self._parts: deque[list[QueuedItem]] = deque()
        self._held = 0  # events in the window, plus the part the consumer is on
        self._taken = 0  # the size of that part
        self._pending_lost = 0  # losses not yet told to the consumer
        self._lost = 0
        self._window_overflow = 0
        self._state = _State.OPEN
        #: The state is ABANDONED: read without the lock, per event, by the delivery loop.
        self._abandoned = False
        self._cond = threading.Condition(threading.Lock())
        self._failure: BaseException | None = None
        self.delivered: Counter[EventKind] = Counter()
        self.handler_errors = 0
        #: Set by the scope: the kernel queue's overflow count when we joined, and at the end.
        self.overflow_base: Callable[[], int] = lambda: 0
        #: Set once the subscription is detached: no more offers (what is held may still be
        #: taken, unless it was abandoned).
        self.ended = threading.Event()

    # -- the retrieval thread's side ---------------------------------------------------
    def offer(self, parts: list[list[QueuedItem]], count: int, lost: int, backlog: int) -> None:
        """Take a batch drained from the kernel queue, cut in parts of at most CHUNK events
        (``count`` in all); never waits for the consumer. ``backlog``: what the kernel queue
        holds behind it; with DROP_OLDEST it counts against this subscriber's limit too
        (it is newer, so room is made for it now)."""
        with self._cond:
            if self._state is not _State.OPEN:
                return
            if self.policy is OverflowPolicy.DROP_NEWEST:
                backlog = 0  # the earliest are kept: the backlog waits its turn to be dropped
            excess = self._held + count + backlog - self.limit
            if excess > 0:
                parts, dropped = self._make_room(parts, excess)
                self._window_overflow += dropped
                lost += dropped
                count = sum(map(len, parts))
            self._parts.extend(parts)
            self._held += count
            if lost:
                self._pending_lost += lost
                self._lost += lost
            self._cond.notify()
        if self.wake is not None:
            self.wake()

    def _make_room(
        self, parts: list[list[QueuedItem]], excess: int
    ) -> tuple[list[list[QueuedItem]], int]:
        """Apply the policy so that the window (and the part being consumed) holds at most
        ``limit`` events; returns what is left of ``parts`` and how many were dropped.
        Parts are shared with the other subscribers: never changed, only sliced, so a
        dropped event is never kept alive by a part it shared with kept ones."""
        if self.policy is OverflowPolicy.DROP_NEWEST:
            return _keep_first(parts, sum(map(len, parts)) - excess)
        dropped, window = 0, self._parts
        while excess > 0 and window:  # the oldest waiting events go first
            head = window[0]
            n = min(len(head), excess)
            if n == len(head):
                window.popleft()
            else:
                window[0] = head[n:]
            self._held -= n
            dropped += n
            excess -= n
        if excess > 0:  # the part being consumed fills the rest: keep the newest of these
            parts, more = _drop_first(parts, excess)
            dropped += more
        return parts, dropped

    def fail(self, error: BaseException) -> None:
        """The kernel side failed and monitoring is over: hand over what is held, then the
        error (``on_error``, or the stream raises it)."""
        self._failure = error  # before the state changes: the consumer reads it at the end
        self._finish()

    # -- the consumer's side ---------------------------------------------------------
    def take(self, until: float | None = None) -> tuple[Sequence[QueuedItem], int] | None:
        """The next events (up to CHUNK) and the losses to report before them; waits until
        ``until`` (time.monotonic(), None: for ever). ``((), 0)`` when that time came with nothing;
        None once the subscription has ended and nothing is left."""
        with self._cond:
            self._held -= self._taken  # the previous part is done with
            self._taken = 0
            while not self._parts and not self._pending_lost:
                if self._state is not _State.OPEN:
                    return None
                left = None if until is None else until - time.monotonic()
                if left is not None and left <= 0:
                    return (), 0
                self._cond.wait(left)
            if self._state is _State.ABANDONED:
                return None
            part: Sequence[QueuedItem] = self._parts.popleft() if self._parts else ()
            self._taken = len(part)
            lost, self._pending_lost = self._pending_lost, 0
            return part, lost

    @property
    def failure(self) -> BaseException | None:
        """Why monitoring ended on its own (the kernel side failed), else None."""
        return self._failure

    @property
    def lost(self) -> int:
        """Events lost to this subscriber: kernel losses while it was attached, plus what
        its window dropped because it fell behind (by its overflow policy)."""
        return self._lost

    @property
    def closed(self) -> bool:
        return self.ended.is_set()

    @property
    def queued(self) -> int:
        """Events in the window, waiting for this consumer."""
        return self._held

    def stats(self) -> MonitorStats:
        from .scope import MonitorStats

        return MonitorStats(
            delivered=dict(self.delivered),
            lost=self._lost,
            queue_overflow=self._window_overflow + self.overflow_base(),
            handler_errors=self.handler_errors,
            queued=self._held,
            error=self._failure,
            subscribers=0 if self.closed else 1,
        )

    def close(self, timeout: float | None = DEFAULT_STOP_TIMEOUT) -> None:
        """Detach; the last subscriber to leave releases the kernel side. What the window
        holds is delivered first, for at most ``timeout`` seconds (None: however long it
        takes); a handler still running then is logged and called no more. From the
        subscriber's own handler it returns at once and delivers nothing more. Idempotent;
        callable from any thread."""
        self._scope._detach(self, timeout)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ending (the scope calls these) ---------------------------------------------------
    def _finish(self) -> None:
        """No more offers: the consumer may still take what is held."""
        with self._cond:
            if self._state is _State.OPEN:
                self._state = _State.DRAINING
            self._cond.notify_all()
        self.ended.set()
        if self.wake is not None:
            self.wake()

    def _abandon(self) -> None:
        """Deliver nothing more; what the window holds is discarded."""
        with self._cond:
            self._state = _State.ABANDONED
            self._abandoned = True
            self._parts.clear()
            self._held = self._taken = 0
            self._cond.notify_all()
        self.ended.set()
        if self.wake is not None:
            self.wake()

    def _forget_after_fork(self) -> None:
        """In a forked child: whatever thread of ours survived must do nothing more."""
        # No lock: a thread that did not come along may hold it.
        self._state = _State.ABANDONED
        self._abandoned = True
        # No wake-up: an event loop does not run on in a forked child (asyncio refuses to,
        # "no running event loop"), so no awatch() consumer there waits for one.

    def __repr__(self) -> str:
        return f"<Subscription {self.name}{' closed' if self.closed else ''}>"


def cut(items: list[QueuedItem]) -> list[list[QueuedItem]]:
    """A drained batch in parts of at most CHUNK events (once, for every subscriber)."""
    if len(items) <= CHUNK:
        return [items] if items else []
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


def _keep_first(parts: list[list[QueuedItem]], keep: int) -> tuple[list[list[QueuedItem]], int]:
    kept: list[list[QueuedItem]] = []
    dropped = 0
    for part in parts:
        take = max(0, min(len(part), keep))
        if take:
            kept.append(part if take == len(part) else part[:take])
        keep -= take
        dropped += len(part) - take
    return kept, dropped


def _drop_first(parts: list[list[QueuedItem]], drop: int) -> tuple[list[list[QueuedItem]], int]:
    kept: list[list[QueuedItem]] = []
    dropped = 0
    for part in parts:
        n = max(0, min(len(part), drop - dropped))
        dropped += n
        if n < len(part):
            kept.append(part if n == 0 else part[n:])
    return kept, dropped


class HandlerSubscription(Subscription):
    """A subscription whose events go to a CallbackHandler, on a delivery thread of its own
    (calls never overlap, and come in the window's order)."""

    def __init__(
        self,
        scope: ApplicationScope,
        handler: CallbackHandler,
        param: Any,
        limit: int,
        policy: OverflowPolicy,
    ) -> None:
        super().__init__(scope, type(handler).__qualname__, param, limit, policy)
        self.handler = handler
        self._errors: Counter[tuple[str, type[BaseException]]] = Counter()
        self._thread = threading.Thread(
            target=self._run, name=f"procobsrv-deliver-{self.name}", daemon=True
        )
        #: Called on the delivery thread as its last act (the scope's bookkeeping).
        self.on_exit: Callable[[], None] | None = None

    def start(self) -> None:
        self._thread.start()

    def is_current(self) -> bool:
        return self._thread is threading.current_thread()

    def join(self, timeout: float | None) -> bool:
        """True once the delivery thread has ended."""
        if self._thread.ident is None or self.is_current():
            return not self._thread.is_alive()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def where(self) -> str:
        """Where the handler is now (for the log of a stop that timed out)."""
        frame = sys._current_frames().get(self._thread.ident or -1)
        spot = "?"
        while frame is not None and frame.f_code.co_filename != __file__:
            spot = f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})"
            frame = frame.f_back  # outwards, up to the call from the delivery loop
        return spot

    def _run(self) -> None:
        pid = os.getpid()
        handler, param = self.handler, self.param
        on_event, delivered = handler.on_process_event, self.delivered
        try:
            while not self._abandoned:  # read before taking the lock (see fork)
                got = self.take()
                if got is None:
                    break
                batch, lost = got
                if lost:
                    try:
                        handler.on_events_lost(lost, param)
                    except Exception as exc:
                        self._raised("on_events_lost", exc, lost)
                for item in batch:
                    try:
                        on_event(item, param)
                    except Exception as exc:
                        self._raised("on_process_event", exc, item)
                    delivered[item.kind] += 1
                    if self._abandoned:
                        break
            if not self._abandoned and self._failure is not None:
                try:
                    handler.on_error(self._failure, param)
                except Exception as exc:
                    self._raised("on_error", exc, self._failure)
        finally:
            if os.getpid() != pid:
                # The handler forked and returned in the child: this thread is the child's
                # only one and belongs to the parent's monitoring. End the child here,
                # touching nothing (its fds were closed at fork; their numbers may be reused).
                os._exit(0)
            self._summarise_errors()
            if self.on_exit is not None:
                self.on_exit()

    def _raised(self, method: str, exc: Exception, about: object) -> None:
        self.handler_errors += 1
        key = (method, type(exc))
        self._errors[key] += 1
        n = self._errors[key]
        if n == 1:
            log.error(
                "%s.%s raised %s on %r; delivery goes on (repeats are counted, not logged)",
                self.name,
                method,
                type(exc).__name__,
                about,
                exc_info=exc,
            )
        elif n % ERROR_SUMMARY_EVERY == 1:
            self._summary(key, ERROR_SUMMARY_EVERY)

    def _summary(self, key: tuple[str, type[BaseException]], repeats: int) -> None:
        method, kind = key
        log.error(
            "%s.%s raised %s %d more times (%d in all)",
            self.name,
            method,
            kind.__name__,
            repeats,
            self._errors[key],
        )

    def _summarise_errors(self) -> None:
        for key, n in self._errors.items():
            repeats = (n - 1) % ERROR_SUMMARY_EVERY
            if repeats:
                self._summary(key, repeats)
