"""Fan-out: one subscriber of the scope's events, with its own window, counts and end.

The RetrievalThread drains the one QueueContainer and *offers* each batch to every
subscriber. A subscriber's offer never waits: the batch goes into its bounded
:class:`~procobsrv.window.Window` (a slow consumer loses its own events there, counted),
and its consumer takes from the window: a stream's consumer itself, a handler's
:class:`~procobsrv.delivery.DeliveryThread`. The one exception is a handler that is the
scope's only subscriber: there is nobody else to protect, so the retrieval thread calls it
itself, with no window and no thread between (the QueueContainer then bounds what is held
for it). When a second subscriber joins, the handler gets its thread and window; when it is
alone again, the retrieval thread calls it itself again from its next batch on, once the
handler's thread has delivered what its window held (so nothing is lost or reordered).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from . import delivery as delivery_module
from .bounded import Bounds
from .callback import CallbackHandler
from .delivery import Delivery, DeliveryThread
from .events import QueuedItem
from .platform import Platform
from .stats import MonitorStats
from .threads import CustomThread
from .window import Window, WindowState

#: How long stop_monitoring() / Subscription.close() wait, by default, for a handler to be
#: given what is held for it; a handler still running then is called no more (and logged).
DEFAULT_STOP_TIMEOUT = 10.0

#: How a subscription leaves the scope: (subscription, timeout, discard what is held).
Leave = Callable[["Subscription", "float | None", bool], None]

#: Keeps only some events of a batch before they reach a subscriber's window: (events, their
#: estimated bytes) -> (the events kept, their bytes). Called on the retrieval thread, with
#: the same batch object for every subscriber, so one sieve shared by several subscribers
#: can remember its last answer. The window then counts only what the subscriber may see.
Sieve = Callable[[Sequence[QueuedItem], int], tuple[Sequence[QueuedItem], int]]


class Subscription:
    """One consumer of the process-wide scope: returned by ``ApplicationScope.subscribe``.

    Close it (``close()``, or leave ``with scope.subscribe(handler) as sub:``) to detach;
    the last subscription to leave releases the kernel side. ``lost`` and ``stats()`` are
    this subscriber's own: kernel losses it was told of, plus what its own window dropped
    because it fell behind.
    """

    def __init__(
        self, name: str, param: Any, bounds: Bounds, leave: Leave, sieve: Sieve | None = None
    ) -> None:
        self.name = name
        self.param = param
        self.window = Window(bounds)
        #: What this subscriber may see of each batch (None: all of it).
        self.sieve = sieve
        self._leave = leave
        self._failure: BaseException | None = None
        #: Set by the session: the kernel queue's overflow while we were attached.
        self.overflow_base: Callable[[], int] = lambda: 0
        #: Set once the subscription is detached: no more offers (what is held may still be
        #: taken, unless it was abandoned).
        self.ended = threading.Event()

    @property
    def bounds(self) -> Bounds:
        """What this subscriber's window may hold (and the kernel queue, if it started it)."""
        return self.window.bounds

    # -- the retrieval thread's side ---------------------------------------------------
    def offer(self, items: Sequence[QueuedItem], nbytes: int, lost: int) -> None:
        """A batch drained from the kernel queue (``nbytes`` its estimated bytes) and the
        losses to report before it; never waits for the consumer."""
        if self.sieve is not None:
            items, nbytes = self.sieve(items, nbytes)
            if not items and not lost:
                return
        self.window.offer(items, nbytes, lost)

    # -- the consumer's side -------------------------------------------------------------
    def take(self, until: float | None = None) -> tuple[Sequence[QueuedItem], int] | None:
        """The next events and the losses before them (see :meth:`Window.take`)."""
        return self.window.take(until)

    @property
    def wake(self) -> Callable[[], None] | None:
        """Called when the window stops being empty or ends (a stream on an event loop)."""
        return self.window.wake

    @wake.setter
    def wake(self, wake: Callable[[], None] | None) -> None:
        self.window.wake = wake

    @property
    def failure(self) -> BaseException | None:
        """Why monitoring ended on its own (the kernel side failed), else None."""
        return self._failure

    @property
    def lost(self) -> int:
        """Events lost to this subscriber: kernel losses while it was attached, plus what
        its window dropped because it fell behind (by its overflow policy)."""
        return self.window.lost

    @property
    def closed(self) -> bool:
        return self.ended.is_set()

    @property
    def queued(self) -> int:
        """Events held for this consumer."""
        return self.window.held

    def stats(self) -> MonitorStats:
        return MonitorStats(
            lost=self.window.lost,
            queue_overflow=self.window.overflowed + self.overflow_base(),
            queued=self.queued,
            queued_bytes=self.window.held_bytes,
            error=self._failure,
            subscribers=0 if self.closed else 1,
        )

    def close(self, timeout: float | None = DEFAULT_STOP_TIMEOUT) -> None:
        """Detach; the last subscriber to leave releases the kernel side. What is held is
        delivered first, for at most ``timeout`` seconds (None: however long it takes); a
        handler still running then is logged and called no more. From the subscriber's own
        handler it returns at once and delivers nothing more. Idempotent; callable from
        any thread."""
        self._leave(self, timeout, False)

    def discard(self) -> None:
        """Detach at once, dropping what is held (its consumer has gone)."""
        self._leave(self, 0.0, True)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ending (the session calls these) -------------------------------------------------
    def finish(self) -> None:
        """No more offers: the consumer may still take what is held."""
        self.window.finish()
        self.ended.set()

    def fail(self, error: BaseException) -> None:
        """The kernel side failed and monitoring is over: hand over what is held, then the
        error (``on_error``, or the stream raises it)."""
        self._failure = error  # before the end: the consumer reads it there
        self.finish()

    def abandon(self) -> None:
        """Deliver nothing more; what is held is discarded."""
        self.window.abandon()
        self.ended.set()

    def forget_after_fork(self) -> None:
        """In a forked child: whatever thread of ours survived must do nothing more."""
        self.window.forget_after_fork()

    def __repr__(self) -> str:
        return f"<Subscription {self.name}{' closed' if self.closed else ''}>"


class HandlerSubscription(Subscription):
    """A subscription whose events go to a CallbackHandler (calls never overlap, and come
    in the order the kernel queue had them): on the retrieval thread itself while it is
    the only subscriber (:meth:`deliver_on`), else on a thread of its own
    (:meth:`use_own_thread`)."""

    def __init__(self, handler: CallbackHandler, param: Any, bounds: Bounds, leave: Leave) -> None:
        super().__init__(type(handler).__qualname__, param, bounds, leave)
        self.handler = handler
        self.delivery = Delivery(self.name, handler, param, self.window)
        #: The thread that calls the handler: the retrieval thread, or the delivery thread.
        self.runner: CustomThread | None = None
        self._thread: DeliveryThread | None = None
        #: Inline: what the kernel queue holds (it is held for this handler alone).
        self.upstream: Callable[[], tuple[int, int]] = lambda: (0, 0)
        #: Set when it is alone again: (runner, upstream) to go back to at the next offer.
        self._back: tuple[CustomThread, Callable[[], tuple[int, int]]] | None = None
        # Moves between threads: a newcomer's use_own_thread may come during a move back.
        self._moving = threading.Lock()
        self._returning = False
        self._stay_out = False

    def deliver_on(self, runner: CustomThread, upstream: Callable[[], tuple[int, int]]) -> None:
        """Be called by ``runner`` (the retrieval thread) directly: the only subscriber.
        ``upstream``: what the kernel queue holds, (events, bytes)."""
        self.runner, self.upstream = runner, upstream

    def deliver_on_when_drained(
        self, runner: CustomThread, upstream: Callable[[], tuple[int, int]]
    ) -> None:
        """The only subscriber again: at ``runner``'s next offer (between batches), let the
        handler's own thread deliver what its window holds and end, then be called by
        ``runner`` directly, as :meth:`deliver_on`."""
        with self._moving:
            if self._thread is not None:
                self._back = (runner, upstream)

    def use_own_thread(self, platform: Platform) -> None:
        """From the next offer on, deliver on a thread of the handler's own, from its
        window (there are other subscribers to protect)."""
        with self._moving:
            self._back = None
            if self._returning:  # its thread is ending: _come_back starts another
                self._stay_out = True
            elif self._thread is None:
                self._start_thread(platform)

    def _start_thread(self, platform: Platform) -> None:
        thread = DeliveryThread(platform, self.delivery)
        thread.start()
        self.upstream = lambda: (0, 0)
        self._thread = self.runner = thread

    def offer(self, items: Sequence[QueuedItem], nbytes: int, lost: int) -> None:
        if self._back is not None:
            self._come_back()
        if self._thread is not None:
            self.window.offer(items, nbytes, lost)
        elif self.window.state is WindowState.OPEN:
            self.window.count_lost(lost)  # told at once, below
            self.delivery.deliver(items, lost)

    def _come_back(self) -> None:
        """On the runner to come back to, between two batches: the handler's thread delivers
        what its window holds and ends (calls never overlap), then the runner calls the
        handler itself (or, if a newcomer came meanwhile, a new thread of its own does)."""
        with self._moving:
            back, thread, self._back = self._back, self._thread, None
            if back is None or thread is None:
                return
            self._returning = True
        self.window.hand_back()
        thread.join(None)
        with self._moving:
            self._returning, stay_out, self._stay_out = False, self._stay_out, False
            if not self.window.reopen():  # closed meanwhile: it stays ended
                return
            self._thread = None
            if stay_out:
                self._start_thread(thread.platform)
            else:
                self.deliver_on(*back)

    @property
    def queued(self) -> int:
        return self.window.held + self.upstream()[0]

    def stats(self) -> MonitorStats:
        own = super().stats()
        return MonitorStats(
            delivered=dict(self.delivery.delivered),
            lost=own.lost,
            queue_overflow=own.queue_overflow,
            handler_errors=self.delivery.handler_errors,
            queued=self.queued,
            queued_bytes=own.queued_bytes + self.upstream()[1],
            error=own.error,
            subscribers=own.subscribers,
        )

    def fail(self, error: BaseException) -> None:
        if self._thread is not None:
            self._thread.failure = error  # told after what its window holds
            super().fail(error)
            return
        super().fail(error)  # monitoring is over (the handler may start it again)
        if not self.window.abandoned:
            self.delivery.tell_error(error)
        self.delivery.summarise_errors()

    def finish(self) -> None:
        super().finish()
        if self._thread is None:
            self.delivery.summarise_errors()

    def is_current(self) -> bool:
        """True on the thread that calls the handler."""
        return self.runner is not None and self.runner.is_current()

    def join(self, timeout: float | None) -> bool:
        """Wait until the handler's thread has ended; True once it has."""
        return self.runner is None or self.runner.join(timeout)

    def where(self) -> str:
        """Where the handler is now (for the log of a stop that timed out)."""
        if self.runner is None:
            return "?"
        return self.runner.where(skip=delivery_module.__file__)
