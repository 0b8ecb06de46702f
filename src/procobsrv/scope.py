"""The article's ApplicationScope: the singleton that owns the one kernel subscription.

Any number of subscribers share it: the scope's own handler (``start_monitoring``), more
handlers (``subscribe``), and the streams of ``watch()`` / ``awatch()``. The kernel side (a
:class:`_Session`: source, ProcessThreadMonitor, QueueContainer, RetrievalThread) runs
while at least one is attached and is released when the last one leaves.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .callback import CallbackHandler
from .container import DEFAULT_QUEUE_LIMIT, OverflowPolicy, QueueContainer
from .errors import MonitorError
from .events import EventKind
from .platform import KernelSource, Platform, SourceChoice, current_platform, open_source
from .process_monitor import ProcessThreadMonitor
from .retrieval import RetrievalThread
from .subscription import DEFAULT_STOP_TIMEOUT, HandlerSubscription, Subscription

log = logging.getLogger(__name__)

#: The interpreter's exit (atexit) gives handlers this long, in all, to be given what is
#: queued; then it goes on (the handler threads are daemons).
EXIT_TIMEOUT = 3.0


@dataclass(frozen=True)
class MonitorStats:
    """Counts of one subscriber, or of the whole scope (the current or last session).

    For the whole scope the per-subscriber counts are summed over every subscriber the
    session had: with one subscriber they are that subscriber's.
    """

    delivered: dict[EventKind, int] = field(default_factory=dict)
    #: Events reported to on_events_lost (or a stream's ``lost``): kernel losses plus overflow.
    lost: int = 0
    #: Of ``lost``, events the user-mode queue or the subscriber's window dropped because
    #: the subscriber fell behind.
    queue_overflow: int = 0
    handler_errors: int = 0
    #: Events held in user mode now: the kernel queue plus the subscribers' windows.
    queued: int = 0
    #: Why monitoring stopped on its own (the handler's ``on_error`` got it too), else None.
    error: BaseException | None = None
    #: Whole scope: events taken from the kernel queue and handed to the subscribers.
    received: int = 0
    #: Subscribers attached now.
    subscribers: int = 0
    #: A step of stopping that failed (e.g. the kernel source's close); logged too. Every
    #: other step ran anyway.
    stop_error: BaseException | None = None

    @property
    def total(self) -> int:
        return sum(self.delivered.values())


class _Session:
    """One kernel subscription: the source, the queue and the two threads around it."""

    def __init__(
        self, platform: Platform, source: KernelSource, queue_limit: int, overflow: OverflowPolicy
    ) -> None:
        self.platform = platform
        self.source = source
        # Each part holds kernel objects (eventfds, events): if a later one cannot be made
        # (no fds left), release the earlier ones rather than leak them.
        with contextlib.ExitStack() as undo:
            self.container = QueueContainer(platform, queue_limit, overflow)
            undo.callback(self.container.close)
            self.retrieval = RetrievalThread(platform, self.container)
            undo.callback(self.retrieval.close)
            self.monitor = ProcessThreadMonitor(platform, source, self.container)
            undo.pop_all()
        self.stopped = threading.Event()
        self.stop_error: BaseException | None = None
        #: Every subscriber the session had, until its counts are folded into ``_done``.
        self.members: list[Subscription] = []
        self._done: list[MonitorStats] = []
        self._stopping = False
        self._lock = threading.Lock()

    def start(self) -> None:
        self.retrieval.start()
        self.monitor.start()

    def join(self, subscriber: Subscription) -> None:
        """Attach (the subscriber gets every batch drained from now on)."""
        base, container = self.container.overflowed, self.container
        subscriber.overflow_base = lambda: container.overflowed - base
        with self._lock:
            self.members.append(subscriber)
        self.retrieval.subscribers = (*self.retrieval.subscribers, subscriber)

    def leave(self, subscriber: Subscription) -> bool:
        """Detach; True if it was the last."""
        frozen = subscriber.overflow_base()
        subscriber.overflow_base = lambda: frozen
        rest = tuple(s for s in self.retrieval.subscribers if s is not subscriber)
        if rest:
            self.retrieval.subscribers = rest
        return not rest

    def fold(self, subscriber: Subscription) -> None:
        with self._lock:
            if subscriber in self.members:
                self.members.remove(subscriber)
                self._done.append(subscriber.stats())

    def stop(self) -> None:
        """Monitor first (nothing new is queued), then the kernel, then hand on the rest.

        Every step runs whatever an earlier one raised; a failure is logged and kept in
        ``stop_error``. Once only: a second caller waits for the first.
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
            if self.retrieval.is_current():
                # The monitor failed and we are on the retrieval thread, which cannot wait
                # for itself: it releases the kernel objects on its way out.
                self.retrieval.on_exit = self._release
                self.retrieval.shutdown.set()
                return
            self._step("stopping the retrieval thread", self.retrieval.stop)
            self._release()
        finally:
            self.retrieval.subscribers = ()
            self.stopped.set()

    def _release(self) -> None:
        self._step("releasing the monitor", self.monitor.close)
        self._step("releasing the retrieval thread", self.retrieval.close)
        self._step("releasing the queue", self.container.close)

    def _step(self, what: str, step: Any) -> None:
        try:
            step()
        except Exception as exc:
            log.error("%s failed; the rest of the stop went on", what, exc_info=exc)
            if self.stop_error is None:
                self.stop_error = exc

    def stats(self) -> MonitorStats:
        with self._lock:
            parts = self._done + [s.stats() for s in self.members]
        delivered: Counter[EventKind] = Counter()
        for p in parts:
            delivered.update(p.delivered)
        return MonitorStats(
            delivered=dict(delivered),
            lost=sum(p.lost for p in parts),
            queue_overflow=sum(p.queue_overflow for p in parts),
            handler_errors=sum(p.handler_errors for p in parts),
            queued=len(self.container) + sum(p.queued for p in parts),
            error=self.container.failure,
            received=self.retrieval.received,
            subscribers=len(self.retrieval.subscribers),
            stop_error=self.stop_error,
        )


class ApplicationScope:
    """The singleton that owns monitoring: ``get_instance(handler)``, then start and stop.

    ``start_monitoring`` / ``stop_monitoring`` attach and detach the scope's own handler;
    ``subscribe`` attaches more. They all share one kernel subscription.
    """

    _instance: ApplicationScope | None = None
    _instance_lock = threading.Lock()

    def __init__(self, handler: CallbackHandler | None, _token: object = None) -> None:
        if _token is not _TOKEN:
            raise TypeError("use ApplicationScope.get_instance(handler)")
        self._handler = handler
        self._lock = threading.RLock()
        self._session: _Session | None = None
        self._last: _Session | None = None
        self._primary: HandlerSubscription | None = None  # the scope's handler, attached
        self._last_primary: HandlerSubscription | None = None

    @classmethod
    def get_instance(cls, handler: CallbackHandler | None = None) -> ApplicationScope:
        """The one instance; the first call must give the handler."""
        if handler is not None and not isinstance(handler, CallbackHandler):
            raise TypeError(f"handler must be a CallbackHandler, not {type(handler).__name__}")
        if handler is None and cls._instance is None:
            raise MonitorError(
                "ApplicationScope.get_instance() needs a CallbackHandler the first time"
            )
        scope = cls._shared()
        if handler is not None:
            scope._bind(handler)
        return scope

    @classmethod
    def _shared(cls) -> ApplicationScope:
        """The one instance, created without a handler if need be (for the streams)."""
        _watch_forks()  # before the scope's first lock is taken: a fork may copy it held
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls(None, _TOKEN)
            return cls._instance

    @property
    def handler(self) -> CallbackHandler | None:
        """The scope's own handler: the one ``start_monitoring`` attaches."""
        return self._handler

    def _bind(self, handler: CallbackHandler) -> None:
        with self._lock:
            if handler is self._handler:
                return
            if self._handler_attached():
                raise MonitorError(
                    "monitoring is running with another handler: call stop_monitoring() "
                    "first, or attach this one as well with subscribe(handler)"
                )
            self._handler = handler

    @property
    def is_monitoring(self) -> bool:
        """True while the kernel side runs: while any subscriber is attached."""
        return self._session is not None

    def _handler_attached(self) -> bool:
        primary = self._primary
        return primary is not None and not primary.closed

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """The subscribers attached now, in the order they attached."""
        session = self._session
        return session.retrieval.subscribers if session is not None else ()

    @property
    def source(self) -> KernelSource | None:
        """The kernel source of the current session (which one "auto" picked), if any."""
        session = self._session
        return None if session is None else session.source

    def start_monitoring(
        self,
        param: Any = None,
        *,
        source: SourceChoice = "auto",
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
    ) -> bool:
        """Attach the scope's handler; True if it started, False if already attached.
        Raises MonitorError.

        ``queue_limit`` and ``overflow`` bound what is held for this handler while it falls
        behind. If no other subscriber runs, this starts the kernel side: ``source`` picks
        the kernel source by name (Linux: "auto", the default, takes the eBPF source when
        this process may load it, else the connector; "ebpf"; "connector"; Windows: "auto"
        or "driver") or replaces it (tests, replays), and ``queue_limit`` / ``overflow``
        bound the kernel queue too. While others run, the kernel side is theirs: ``source``
        must then be "auto" or name the source they run.
        """
        with self._lock:
            if self._handler_attached():
                return False
            handler = self._handler
            if handler is None:
                raise MonitorError("no handler: call ApplicationScope.get_instance(handler) first")
            subscription = HandlerSubscription(self, handler, param, queue_limit, overflow)
            self._attach(subscription, source)
            self._primary = self._last_primary = subscription
            return True

    def stop_monitoring(self, timeout: float | None = DEFAULT_STOP_TIMEOUT) -> None:
        """Detach the scope's handler; idempotent, callable from any thread or the handler.

        Returns once the handler has been given what was queued for it (all the kernel
        had reported, if it was the last subscriber: then every thread has ended and every
        kernel resource is released), or after ``timeout`` seconds (None: no bound): a
        handler still running then is logged and called no more. From inside the handler
        it returns at once, and the handler is called no more.
        """
        with self._lock:
            primary, self._primary = self._primary, None
        if primary is None:
            last = self._last_primary  # maybe another thread is stopping it now: wait for it
            if last is not None:
                last.join(timeout)
            return
        primary.close(timeout)

    def subscribe(
        self,
        handler: CallbackHandler,
        param: Any = None,
        *,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
        source: SourceChoice | None = None,
    ) -> Subscription:
        """Attach another handler, with its own ``param``, window (``queue_limit``,
        ``overflow``), counts and thread; returns its Subscription (``close()`` it, or use
        it as a context manager). Starts the kernel side if nothing runs (then ``source``,
        ``queue_limit`` and ``overflow`` apply to it as in ``start_monitoring``)."""
        if not isinstance(handler, CallbackHandler):
            raise TypeError(f"handler must be a CallbackHandler, not {type(handler).__name__}")
        return self._attach(
            HandlerSubscription(self, handler, param, queue_limit, overflow), source
        )

    def _subscribe_stream(
        self,
        name: str,
        source: SourceChoice | None = None,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
    ) -> Subscription:
        """A subscription whose consumer takes from the window itself (the streams)."""
        return self._attach(Subscription(self, name, None, queue_limit, overflow), source)

    def _attach(self, subscription: Subscription, source: SourceChoice | None) -> Subscription:
        """Attach under the scope's lock; the first subscriber starts the kernel side, its
        ``queue_limit`` and ``overflow`` bounding the kernel queue too."""
        with self._lock:
            self._attach_locked(subscription, source)
        return subscription

    def _attach_locked(self, subscription: Subscription, source: SourceChoice | None) -> None:
        handler = getattr(subscription, "handler", None)
        if handler is not None and any(
            getattr(s, "handler", None) is handler for s in self.subscriptions
        ):
            raise MonitorError(
                f"this {type(handler).__name__} is already subscribed (two subscriptions of "
                "one handler would call it from two threads at once): close that one first"
            )
        session = self._session
        if session is not None:
            if not _runs(session.source, source):
                raise MonitorError(
                    f"the kernel side is already running for other subscribers, with their "
                    f'source ({type(session.source).__name__}): leave source= out or "auto" '
                    "(it applies only to whoever starts it)"
                )
            self._join(session, subscription)
            return
        platform = current_platform()
        source = open_source(platform, source)  # raises MonitorError saying what to do
        try:
            session = _Session(platform, source, subscription.limit, subscription.policy)
            session.retrieval.on_failure = functools.partial(self._end_failed, session)
            self._join(session, subscription)
            session.start()
        except BaseException:
            source.close()
            raise
        self._session = self._last = session
        log.info("monitoring started (%s)", platform.name)

    @staticmethod
    def _join(session: _Session, subscription: Subscription) -> None:
        if isinstance(subscription, HandlerSubscription):
            subscription.start()
        session.join(subscription)

    def _detach(
        self, subscription: Subscription, timeout: float | None, *, discard: bool = False
    ) -> None:
        """End a subscription: the last one out stops the kernel side first, so that what
        the kernel had reported reaches it. ``discard``: its consumer has gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            session = self._session
            attached = session is not None and subscription in session.retrieval.subscribers
            last = False
            if session is not None and attached:
                last = session.leave(subscription)
                if last:
                    self._session = None
        if session is None or not attached:  # ended, or being ended by another thread
            if discard:
                subscription._abandon()
            if isinstance(subscription, HandlerSubscription):
                subscription.join(_left(deadline))
            return
        if last:
            session.stop()
        self._end(subscription, timeout, deadline, discard)
        session.fold(subscription)
        if last:
            log.info("monitoring stopped")

    @staticmethod
    def _end(
        subscription: Subscription, timeout: float | None, deadline: float | None, discard: bool
    ) -> None:
        if discard or (isinstance(subscription, HandlerSubscription) and subscription.is_current()):
            subscription._abandon()  # from inside its own handler: nothing more, at once
            return
        subscription._finish()
        if isinstance(subscription, HandlerSubscription) and not subscription.join(_left(deadline)):
            subscription._abandon()
            log.warning(
                "stop: handler %s still running after %.3g s, in %s; it will be called no more",
                subscription.name,
                timeout,
                subscription.where(),
            )

    def _end_failed(self, session: _Session, error: BaseException) -> None:
        """The session's monitor failed (on its retrieval thread): end it, then tell every
        subscriber, after what was queued for it."""
        with self._lock:
            subscribers = session.retrieval.subscribers
            if self._session is session:
                self._session = None
        session.stop()
        for subscription in subscribers:
            subscription.fail(error)
        log.info("monitoring stopped after a failure: %s", error)

    def shutdown(self, timeout: float | None = DEFAULT_STOP_TIMEOUT) -> None:
        """Detach every subscriber (handlers, streams) and release the kernel side, within
        ``timeout`` seconds in all (None: no bound); what the interpreter's exit does.
        Streams end after what was queued for them; handlers still running then are
        logged and called no more."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._primary = None
        for subscription in self.subscriptions[::-1]:
            self._detach(subscription, _left(deadline))

    def stats(self) -> MonitorStats:
        """Counts of the whole scope: the current session, or the last one once stopped."""
        session = self._last
        return session.stats() if session is not None else MonitorStats()

    def _forget_after_fork(self) -> None:
        """In a forked child: the threads did not come along; drop the parent's session and
        release the handles the child inherited from it."""
        session, self._session = self._session, None
        self._last = self._primary = self._last_primary = None
        self._lock = threading.RLock()
        if session is not None:
            for subscription in session.members:
                subscription._forget_after_fork()
            session.platform.close_inherited(_session_handles(session))


def _runs(running: KernelSource, wanted: SourceChoice | None) -> bool:
    """Whether a later subscriber's ``source=`` is satisfied by the source already running."""
    if wanted is None or wanted is running:
        return True
    return isinstance(wanted, str) and wanted in ("auto", running.name)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _session_handles(session: _Session) -> list[int]:
    """The session's wait handles: what a forked child inherits of it."""
    handles = [
        session.monitor.shutdown.wait_handle,
        session.retrieval.shutdown.wait_handle,
        session.container.element_available.wait_handle,
    ]
    try:
        handles.append(session.source.wait_handle)
    except MonitorError:
        pass
    return [h for h in handles if isinstance(h, int) and h >= 0]


_TOKEN = object()


def _stop_at_exit() -> None:
    instance = ApplicationScope._instance
    if instance is not None:
        instance.shutdown(EXIT_TIMEOUT)


def _after_fork_in_child() -> None:
    ApplicationScope._instance_lock = threading.Lock()
    instance = ApplicationScope._instance
    if instance is not None:
        instance._forget_after_fork()


#: Whether ``_after_fork_in_child`` is registered with the platform (once per process).
_forks_watched = False


def _watch_forks() -> None:
    """From the scope's first use on: a forked child forgets the parent's session, through
    the platform (a system without ``fork()`` registers nothing)."""
    global _forks_watched
    if _forks_watched:
        return
    try:
        platform = current_platform()
    except MonitorError:
        return  # a system procobsrv cannot monitor: no session will ever start here
    # Two threads may both get here: the hook then runs twice in a child, which is harmless.
    platform.at_fork_in_child(_after_fork_in_child)
    _forks_watched = True


atexit.register(_stop_at_exit)
