"""The article's ApplicationScope: the singleton that starts and stops monitoring."""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from .container import DEFAULT_QUEUE_LIMIT, OverflowPolicy, QueueContainer
from .errors import MonitorError
from .events import EventKind
from .handler import CallbackHandler
from .monitor import ProcessThreadMonitor
from .platform import KernelSource, Platform, SourceChoice, current_platform, open_source
from .retrieval import RetrievalThread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorStats:
    """Counts for one monitoring session (the last one, once it has stopped)."""

    delivered: dict[EventKind, int] = field(default_factory=dict)
    #: Events reported to on_events_lost: kernel losses plus queue overflow.
    lost: int = 0
    #: Of ``lost``, events the user-mode queue dropped because the handler fell behind.
    queue_overflow: int = 0
    handler_errors: int = 0
    queued: int = 0
    #: Why monitoring stopped on its own (the handler's ``on_error`` got it too), else None.
    error: BaseException | None = None

    @property
    def total(self) -> int:
        return sum(self.delivered.values())


class _Session:
    """One start..stop: the source, the queue and the two threads that connect them."""

    def __init__(
        self,
        platform: Platform,
        source: KernelSource,
        handler: CallbackHandler,
        param: Any,
        queue_limit: int,
        overflow: OverflowPolicy,
    ) -> None:
        self.source = source
        self.container = QueueContainer(platform, queue_limit, overflow)
        self.retrieval = RetrievalThread(platform, self.container, handler, param)
        self.monitor = ProcessThreadMonitor(platform, source, self.container)
        self.stopped = threading.Event()

    def start(self) -> None:
        self.retrieval.start()
        self.monitor.start()

    def stop(self) -> None:
        """Monitor first (nothing new is queued), then the kernel, then deliver the rest."""
        try:
            self.monitor.stop()
            self.source.close()
            if self.retrieval.is_current():
                # Called from inside the handler: we cannot wait for ourselves. The thread
                # ends when the handler returns, and releases the kernel objects on its way out.
                self.retrieval.on_exit = self._release
                self.retrieval.abandon()
                return
            self.retrieval.stop()
            self._release()
        finally:
            self.stopped.set()

    def _release(self) -> None:
        self.monitor.close()
        self.retrieval.close()
        self.container.close()

    def stats(self) -> MonitorStats:
        r = self.retrieval
        return MonitorStats(
            delivered=dict(r.delivered),
            lost=r.lost_reported,
            queue_overflow=self.container.overflowed,
            handler_errors=r.handler_errors,
            queued=len(self.container),
            error=self.container.failure,
        )


class ApplicationScope:
    """The singleton that owns monitoring: ``get_instance(handler)``, then start and stop."""

    _instance: ApplicationScope | None = None
    _instance_lock = threading.Lock()

    def __init__(self, handler: CallbackHandler, _token: object = None) -> None:
        if _token is not _TOKEN:
            raise TypeError("use ApplicationScope.get_instance(handler)")
        self._handler = handler
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._last: _Session | None = None

    @classmethod
    def get_instance(cls, handler: CallbackHandler | None = None) -> ApplicationScope:
        """The one instance; the first call must give the handler."""
        if handler is not None and not isinstance(handler, CallbackHandler):
            raise TypeError(f"handler must be a CallbackHandler, not {type(handler).__name__}")
        with cls._instance_lock:
            if cls._instance is None:
                if handler is None:
                    raise MonitorError(
                        "ApplicationScope.get_instance() needs a CallbackHandler the first time"
                    )
                cls._instance = cls(handler, _TOKEN)
            elif handler is not None:
                cls._instance._bind(handler)
            return cls._instance

    @property
    def handler(self) -> CallbackHandler:
        return self._handler

    def _bind(self, handler: CallbackHandler) -> None:
        with self._lock:
            if handler is self._handler:
                return
            if self._session is not None:
                raise MonitorError(
                    "monitoring is running with another handler: call stop_monitoring() first"
                )
            self._handler = handler

    @property
    def is_monitoring(self) -> bool:
        return self._session is not None

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
        """Start; True if it started, False if already monitoring. Raises MonitorError.

        ``source`` picks the kernel source by name (Linux: "auto", the default, takes the eBPF
        source when this process may load it, else the connector; "ebpf"; "connector";
        Windows: "auto" or "driver") or replaces it (tests, replays); ``queue_limit`` and
        ``overflow`` bound the queue between the kernel and a slow handler.
        """
        with self._lock:
            if self._session is not None:
                return False
            platform = current_platform()
            source = open_source(platform, source)  # raises MonitorError saying what to do
            try:
                session = _Session(platform, source, self._handler, param, queue_limit, overflow)
                session.retrieval.on_failure = functools.partial(self._end_failed, session)
                session.start()
            except BaseException:
                source.close()
                raise
            self._session = self._last = session
            log.info("monitoring started (%s)", platform.name)
            return True

    def stop_monitoring(self) -> None:
        """Stop and release everything; idempotent, callable from any thread or the handler.

        Returns once every thread has ended and every kernel resource is released, after
        delivering what was queued, except from inside the handler, where it returns at once.
        """
        with self._lock:
            session, self._session = self._session, None
        if session is None:
            last = self._last  # maybe another thread is stopping it right now: wait for that
            if last is not None and not last.retrieval.is_current():
                last.stopped.wait()
            return
        session.stop()
        log.info("monitoring stopped")

    def _end_failed(self, session: _Session) -> None:
        """The session's monitor failed (on its retrieval thread): end it, unless someone
        is already stopping it."""
        with self._lock:
            if self._session is not session:
                return
            self._session = None
        session.stop()
        log.info("monitoring stopped after a failure: %s", session.container.failure)

    def stats(self) -> MonitorStats:
        """Counts of the current session, or of the last one once it has stopped."""
        session = self._last
        return session.stats() if session is not None else MonitorStats()

    def _forget_after_fork(self) -> None:
        """In a forked child: the threads did not come along; drop the parent's session."""
        session, self._session = self._session, None
        self._last = None
        self._lock = threading.Lock()
        if session is not None:
            for fd in _session_fds(session):
                try:
                    os.close(fd)
                except OSError:
                    pass


def _session_fds(session: _Session) -> list[int]:
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
        instance.stop_monitoring()


def _after_fork_in_child() -> None:
    ApplicationScope._instance_lock = threading.Lock()
    instance = ApplicationScope._instance
    if instance is not None:
        instance._forget_after_fork()


atexit.register(_stop_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
