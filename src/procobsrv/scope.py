"""The article's ApplicationScope: the singleton that owns the one kernel subscription.

Any number of subscribers share it: the scope's own handler (``start_monitoring``), more
handlers (``subscribe``), and the streams of ``watch()`` / ``awatch()``. The kernel side (a
:class:`~procobsrv.session.Session`) runs while at least one is attached and is released
when the last one leaves. This module attaches and detaches; the session runs the threads.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from . import process_hooks
from .bounded import Bounds
from .callback import CallbackHandler
from .container import DEFAULT_QUEUE_LIMIT, OverflowPolicy
from .errors import MonitorError
from .host import current_platform
from .memory import DEFAULT_QUEUE_BYTES
from .platform import KernelSource, SourceChoice, open_source
from .session import Session
from .stats import MonitorStats
from .subscription import DEFAULT_STOP_TIMEOUT, HandlerSubscription, Sieve, Subscription

log = logging.getLogger(__name__)

#: The interpreter's exit (atexit) gives handlers this long, in all, to be given what is
#: queued; then it goes on (the handler threads are daemons).
EXIT_TIMEOUT = 3.0

__all__ = ["EXIT_TIMEOUT", "ApplicationScope", "MonitorStats"]


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
        self._session: Session | None = None
        self._last: Session | None = None
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
        scope = cls.shared()
        if handler is not None:
            scope._bind(handler)
        return scope

    @classmethod
    def shared(cls) -> ApplicationScope:
        """The one instance, created without a handler if need be (what the streams and
        ``monitor()`` use: they bring their own consumer)."""
        # Before the scope's first lock is taken: a fork may copy it held.
        process_hooks.at_fork_in_child(_after_fork_in_child)
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
        return session.subscribers if session is not None else ()

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
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
    ) -> bool:
        """Attach the scope's handler; True if it started, False if already attached.
        Raises MonitorError.

        ``queue_limit`` (events), ``queue_bytes`` (estimated bytes) and ``overflow`` bound
        what is held for this handler while it falls behind. If no other subscriber runs,
        this starts the kernel side: ``source`` picks the kernel source by name (Linux:
        "auto", the default, takes the eBPF source when this process may load it, else the
        connector; "ebpf"; "connector"; Windows: "auto" or "driver") or replaces it (tests,
        replays), and the bounds apply to the kernel queue too. While others run, the
        kernel side is theirs: ``source`` must then be "auto" or name the source they run.
        """
        with self._lock:
            if self._handler_attached():
                return False
            handler = self._handler
            if handler is None:
                raise MonitorError("no handler: call ApplicationScope.get_instance(handler) first")
            subscription = HandlerSubscription(
                handler, param, Bounds(queue_limit, queue_bytes, overflow), self._detach
            )
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
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        source: SourceChoice | None = None,
    ) -> Subscription:
        """Attach another handler, with its own ``param``, window (``queue_limit``,
        ``queue_bytes``, ``overflow``), counts and thread; returns its Subscription
        (``close()`` it, or use it as a context manager). Starts the kernel side if nothing
        runs (then ``source`` and the bounds apply to it as in ``start_monitoring``)."""
        if not isinstance(handler, CallbackHandler):
            raise TypeError(f"handler must be a CallbackHandler, not {type(handler).__name__}")
        subscription = HandlerSubscription(
            handler, param, Bounds(queue_limit, queue_bytes, overflow), self._detach
        )
        with self._lock:
            self._attach(subscription, source)
        return subscription

    def open_stream(
        self,
        name: str,
        source: SourceChoice | None = None,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        sieve: Sieve | None = None,
    ) -> Subscription:
        """A subscription whose consumer takes from its window itself (``take``): what the
        streams of ``watch()`` and ``awatch()`` are made of. ``sieve`` keeps only some
        events of each batch, before the window (``procobsrv serve``: a user's own)."""
        subscription = Subscription(
            name, None, Bounds(queue_limit, queue_bytes, overflow), self._detach, sieve
        )
        with self._lock:
            self._attach(subscription, source)
        return subscription

    def _attach(self, subscription: Subscription, source: SourceChoice | None) -> None:
        """Under the scope's lock: join the running session, or start one (the first
        subscriber's bounds then bound the kernel queue too)."""
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
            session.join(subscription)
            return
        platform = current_platform()
        opened = open_source(platform, source)  # raises MonitorError saying what to do
        try:
            session = Session(platform, opened, subscription.bounds)
            session.on_failure = self._forget
            session.join(subscription)
            session.start()
        except BaseException:
            opened.close()
            raise
        self._session = self._last = session
        log.info("monitoring started (%s)", platform.name)

    def _forget(self, session: Session) -> None:
        """The session ends on its own (its monitor failed): it is no longer the one."""
        with self._lock:
            if self._session is session:
                self._session = None

    def _detach(self, subscription: Subscription, timeout: float | None, discard: bool) -> None:
        """End a subscription (its ``close`` / ``discard``): the last one out stops the
        kernel side first, so that what the kernel had reported reaches it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            session = self._session
            attached = session is not None and subscription in session.subscribers
            last = False
            if session is not None and attached:
                last = session.leave(subscription)
                if last:
                    self._session = None
        if session is None or not attached:  # ended, or being ended by another thread
            if discard:
                subscription.abandon()
            if isinstance(subscription, HandlerSubscription):
                subscription.join(_left(deadline))
            return
        if last:
            session.stop(None if discard else _left(deadline))
        _end(subscription, timeout, deadline, discard)
        session.fold(subscription)
        if last:
            log.info("monitoring stopped")

    def shutdown(self, timeout: float | None = DEFAULT_STOP_TIMEOUT) -> None:
        """Detach every subscriber (handlers, streams) and release the kernel side, within
        ``timeout`` seconds in all (None: no bound); what the interpreter's exit does.
        Streams end after what was queued for them; handlers still running then are
        logged and called no more."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._primary = None
        for subscription in self.subscriptions[::-1]:
            self._detach(subscription, _left(deadline), False)

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
            session.forget_after_fork()


def _end(
    subscription: Subscription, timeout: float | None, deadline: float | None, discard: bool
) -> None:
    """After it left: let its consumer take what is held (a handler: within the deadline)."""
    if discard or (isinstance(subscription, HandlerSubscription) and subscription.is_current()):
        subscription.abandon()  # from inside its own handler: nothing more, at once
        return
    subscription.finish()
    if isinstance(subscription, HandlerSubscription) and not subscription.join(_left(deadline)):
        where = subscription.where()
        subscription.abandon()
        log.warning(
            "stop: handler %s still running after %.3g s, in %s; it will be called no more",
            subscription.name,
            timeout,
            where,
        )


def _runs(running: KernelSource, wanted: SourceChoice | None) -> bool:
    """Whether a later subscriber's ``source=`` is satisfied by the source already running."""
    if wanted is None or wanted is running:
        return True
    return isinstance(wanted, str) and wanted in ("auto", running.name)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


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


process_hooks.at_exit(_stop_at_exit)
