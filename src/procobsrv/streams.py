"""Pythonic ways in: a with-block, a blocking iterator and an asyncio stream.

All three drive the one process-wide :class:`ApplicationScope` and its pipeline (kernel
source, ProcessThreadMonitor, QueueContainer, RetrievalThread); they add no second pipeline.

Back-pressure: :func:`watch` and :func:`awatch` hand events from the retrieval thread to
the consumer through a small bounded window (``buffer`` items). When the window is full the
retrieval thread waits, the pipeline's QueueContainer fills up, and at ``queue_limit`` it
applies its overflow policy (``OverflowPolicy.DROP_OLDEST`` by default) and counts the loss.
Lost events (queue overflow and kernel losses alike) are added to the stream's ``lost``
attribute, and logged; the stream goes on. The event loop itself never blocks on the
retrieval thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import MonitorError
from .events import EventKind, QueuedItem
from .handler import CallbackHandler
from .handlers import kind_set
from .scope import ApplicationScope, MonitorStats

log = logging.getLogger(__name__)

#: Events handed to the consumer ahead of it before the retrieval thread waits.
DEFAULT_BUFFER = 1024


@contextlib.contextmanager
def monitor(
    handler: CallbackHandler, param: Any = None, **start_options: Any
) -> Iterator[ApplicationScope]:
    """``with monitor(handler, param) as scope:`` monitors for the duration of the block.

    Starts (``start_options`` are those of ``ApplicationScope.start_monitoring``) and stops
    on the way out, also on an exception; the handler has had every queued event delivered
    when the block is left. Raises MonitorError if monitoring is already running (the scope
    is process-wide, and a with-block that did not start it must not stop it).
    """
    scope = _start(handler, param, start_options, "monitor()")
    try:
        yield scope
    finally:
        if scope.handler is handler:  # unless the block itself stopped and rebound the scope
            scope.stop_monitoring()


def _start(
    handler: CallbackHandler, param: Any, start_options: dict[str, Any], who: str
) -> ApplicationScope:
    try:
        scope = ApplicationScope.get_instance(handler)
    except MonitorError as exc:
        raise MonitorError(
            f"{who}: monitoring is already running with another handler, and the process-wide "
            "ApplicationScope runs one handler at a time: stop it first "
            "(ApplicationScope.get_instance().stop_monitoring())"
        ) from exc
    if not scope.start_monitoring(param, **start_options):
        raise MonitorError(f"{who}: monitoring is already running; stop it first")
    return scope


#: How often a full window, or a consumer waiting for events, re-checks that monitoring was
#: not stopped behind the stream's back (``stop_monitoring()`` called elsewhere, or atexit).
_POLL = 0.2

#: An async consumer yields to the event loop after this many events that were ready at once:
#: during a process storm events are always ready, and other tasks (and a cancel) must run.
_YIELD_EVERY = 64


class _Window(CallbackHandler):
    """The bounded hand-off from the retrieval thread to one consumer.

    The retrieval thread waits while the window is full: that is what lets the
    QueueContainer's own policy decide what is lost. ``close`` wakes it and makes it discard.
    """

    def __init__(self, kinds: frozenset[EventKind] | None, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("buffer must hold at least 1 event")
        self.kinds = kinds
        self.capacity = capacity
        #: Called, outside the lock, when the window stops being empty (awatch's loop wake-up).
        self.wake: Callable[[], None] | None = None
        #: Set once monitoring has started for this window.
        self.scope: ApplicationScope | None = None
        self.lost = 0
        self.closed = False
        self._items: deque[QueuedItem] = deque()
        self._cond = threading.Condition()

    def ended(self) -> bool:
        """Closed, or monitoring for this window was stopped by someone else."""
        scope = self.scope
        return self.closed or (
            scope is not None and (not scope.is_monitoring or scope.handler is not self)
        )

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        if self.kinds is not None and item.kind not in self.kinds:
            return
        with self._cond:
            while len(self._items) >= self.capacity and not self.ended():
                self._cond.wait(_POLL)
            if self.closed:
                return  # the consumer has gone
            if len(self._items) >= self.capacity:
                self.lost += 1  # monitoring was stopped under a full, unread stream
                return
            was_empty = not self._items
            self._items.append(item)
            self._cond.notify_all()
        if was_empty and self.wake is not None:
            self.wake()

    def on_events_lost(self, count: int, param: Any) -> None:
        with self._cond:
            self.lost += count
        log.warning("%d process events were lost before reaching the stream", count)

    def on_error(self, error: BaseException, param: Any) -> None:
        # Monitoring has ended (the stream raises the error to its consumer): wake the consumer.
        with self._cond:
            self._cond.notify_all()
        if self.wake is not None:
            self.wake()

    def pop(self) -> QueuedItem | None:
        """The next event, or None when there is none now."""
        with self._cond:
            if not self._items:
                return None
            self._cond.notify_all()  # a slot is free
            return self._items.popleft()

    def get(self, until: float | None) -> QueuedItem | None:
        """Wait until ``until`` (time.monotonic(); None: for ever) for an event; None when
        that time has come or the window has ended."""
        with self._cond:
            while not self._items:
                if self.ended():
                    return None
                left = None if until is None else until - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(_POLL if left is None else min(left, _POLL))
            self._cond.notify_all()
            return self._items.popleft()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._items.clear()
            self._cond.notify_all()
        if self.wake is not None:
            self.wake()


class _LoopWaker:
    """Wakes the coroutine waiting in ``__anext__``; holds no reference to the stream, so a
    stream dropped by ``break`` is not kept alive by the process-wide scope's handler."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiter: asyncio.Future[None] | None = None

    def __call__(self) -> None:  # on the retrieval thread
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:
            pass  # the loop is closed: nobody waits; the stream ends when monitoring stops

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _check_times(timeout: float | None, duration: float | None) -> None:
    for name, value in (("timeout", timeout), ("duration", duration)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must not be negative")


class _Stream:
    """What the sync and async streams share: start, stop, counts."""

    def __init__(
        self,
        window: _Window,
        timeout: float | None,
        duration: float | None,
        start_options: dict[str, Any],
        who: str,
    ) -> None:
        _check_times(timeout, duration)
        self._window = window
        self.timeout = timeout
        self._deadline = None if duration is None else time.monotonic() + duration
        self._closed = True  # until started: __del__ of a stream that failed to start is a no-op
        self._scope = _start(window, None, start_options, who)
        window.scope = self._scope
        self._closed = False

    @property
    def lost(self) -> int:
        """Events lost so far: kernel losses, queue overflow, and events discarded because
        monitoring was stopped elsewhere while the window was full. The stream goes on."""
        return self._window.lost

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> MonitorStats:
        """The pipeline's counts for this stream's session."""
        return self._scope.stats()

    def _until(self) -> float | None:
        """When the wait for the next event ends (time.monotonic()): idle timeout or duration."""
        idle = None if self.timeout is None else time.monotonic() + self.timeout
        if self._deadline is None or idle is None:
            return self._deadline if idle is None else idle
        return min(idle, self._deadline)

    def _end(self) -> None:
        """The iteration is over: close, and raise MonitorError if it ended because the
        kernel side failed (not because of a timeout, a close or a stop elsewhere)."""
        ours = self._scope.handler is self._window
        self.close()
        error = self._scope.stats().error if ours else None
        if error is not None:
            raise MonitorError(f"process monitoring stopped: {error}") from error

    def close(self) -> None:
        """Stop monitoring and release everything; idempotent, callable from any thread."""
        if self._closed:
            return
        self._closed = True
        self._window.close()  # first: a retrieval thread waiting for room must not block stop
        if self._scope.handler is self._window:
            self._scope.stop_monitoring()

    def __del__(self) -> None:
        # A loop left by ``break`` drops the stream: stop, as a generator's finally would.
        if not getattr(self, "_closed", True):
            self.close()


class EventStream(_Stream):
    """Blocking iterator of QueuedItems returned by :func:`watch`."""

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> QueuedItem:
        if self._closed:
            raise StopIteration
        item = self._window.get(self._until())
        if item is None:
            self._end()
            raise StopIteration
        return item

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def watch(
    kinds: Iterable[EventKind | str] | EventKind | str | None = None,
    timeout: float | None = None,
    *,
    duration: float | None = None,
    buffer: int = DEFAULT_BUFFER,
    **start_options: Any,
) -> EventStream:
    """``for item in watch(kinds=..., timeout=...)``: process events as they happen.

    Monitoring starts before ``watch`` returns, so nothing that happens after the call is
    missed. ``kinds`` keeps only those kinds (EventKind or its value, e.g. ``"exec"``).

    The iteration ends when:

    - ``timeout`` seconds pass with no (matching) event: an *idle* timeout, like
      ``queue.get(timeout=)``, not an error;
    - ``duration`` seconds have passed since the call: a total time limit;
    - the stream is closed: ``close()`` (from any thread, e.g. a signal handler's helper),
      leaving ``with watch() as events:``, or leaving the ``for`` loop by ``break`` or an
      exception (the dropped stream closes itself, like a generator; ``with`` or ``close()``
      make the moment explicit).

    When it ends, monitoring stops and every thread and handle is released. ``lost`` counts
    events that were lost. Raises MonitorError when the process-wide ApplicationScope is
    already monitoring, and from the iteration, after the events queued before it, when
    monitoring stopped because the kernel side failed. ``start_options`` go to
    ``ApplicationScope.start_monitoring`` (``queue_limit``, ``overflow``, ``source``).
    """
    window = _Window(kind_set(kinds), buffer)
    return EventStream(window, timeout, duration, start_options, "watch()")


class AsyncEventStream(_Stream):
    """Asynchronous iterator of QueuedItems returned by :func:`awatch`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        window: _Window,
        timeout: float | None,
        duration: float | None,
        start_options: dict[str, Any],
    ) -> None:
        self._loop = loop
        self._ready_in_a_row = 0
        self._waker = window.wake = _LoopWaker(loop)
        super().__init__(window, timeout, duration, start_options, "awatch()")

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> QueuedItem:
        until = self._until()
        waker, window = self._waker, self._window
        while not self._closed:
            item = window.pop()
            if item is not None:
                self._ready_in_a_row += 1
                if self._ready_in_a_row >= _YIELD_EVERY:
                    self._ready_in_a_row = 0
                    await self._yield_to_loop()
                return item
            if window.ended():
                break
            left = None if until is None else until - time.monotonic()
            if left is not None and left <= 0:
                break
            self._ready_in_a_row = 0  # about to wait: the loop runs the other tasks
            waker.waiter = self._loop.create_future()
            try:
                await asyncio.wait_for(waker.waiter, _POLL if left is None else min(left, _POLL))
            except asyncio.TimeoutError:
                pass
            except asyncio.CancelledError:
                # Cancelling the consumer ends the stream, as it ends an async generator.
                self.close()
                raise
            finally:
                waker.waiter = None
        self._end()
        raise StopAsyncIteration

    async def _yield_to_loop(self) -> None:
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.close()
            raise

    async def aclose(self) -> None:
        """Stop monitoring; takes milliseconds (the threads end at once), so it runs inline."""
        self.close()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def awatch(
    kinds: Iterable[EventKind | str] | EventKind | str | None = None,
    timeout: float | None = None,
    *,
    duration: float | None = None,
    buffer: int = DEFAULT_BUFFER,
    **start_options: Any,
) -> AsyncEventStream:
    """``async for item in awatch(kinds=..., timeout=...)``: :func:`watch` for asyncio.

    Call it from a coroutine (it binds to the running loop). Same arguments, same end
    conditions and the same back-pressure as :func:`watch`: the retrieval thread waits when
    ``buffer`` events are unread (never the event loop), then the pipeline's queue drops by
    its policy and the stream's ``lost`` counts it. Events reach the loop through
    ``call_soon_threadsafe``, one wake-up per burst. Cancelling the task that waits for the
    next event ends the stream and stops monitoring; so do ``aclose()`` and leaving
    ``async with awatch() as events:``. Starting subscribes to the kernel and waits for its
    answer (a few milliseconds) on the calling thread.
    """
    loop = asyncio.get_running_loop()
    window = _Window(kind_set(kinds), buffer)
    return AsyncEventStream(loop, window, timeout, duration, start_options)
