"""Pythonic ways in: a with-block, a blocking iterator and an asyncio stream.

Each is one more subscriber of the one process-wide :class:`ApplicationScope` (kernel
source, ProcessThreadMonitor, QueueContainer, RetrievalThread, then the fan-out); they add
no second pipeline, and any number of them run at once, beside the scope's own handler.

Back-pressure: a stream has its own bounded window (``queue_limit`` events and
``queue_bytes`` estimated bytes, by its own ``overflow`` policy,
``OverflowPolicy.DROP_OLDEST`` by default). A consumer that falls behind loses its own
events, counted in the stream's ``lost`` attribute and logged; it never slows or drops
another subscriber's. The event loop never blocks on the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .callback import CallbackHandler
from .container import DEFAULT_QUEUE_LIMIT, OverflowPolicy
from .errors import MonitorError
from .events import EventKind, QueuedItem
from .filters import kind_set
from .memory import DEFAULT_QUEUE_BYTES
from .platform import SourceChoice
from .scope import ApplicationScope
from .stats import MonitorStats
from .subscription import Subscription

log = logging.getLogger(__name__)

#: Kept for compatibility: the streams used to hand events over through a window of this size.
DEFAULT_BUFFER = 1024


@dataclass(frozen=True)
class StreamOptions:
    """What a stream's subscription is opened with (``ApplicationScope.open_stream``'s
    options, typed): its source, and the bounds and policy of its window."""

    source: SourceChoice | None = None
    queue_limit: int = DEFAULT_QUEUE_LIMIT
    queue_bytes: int = DEFAULT_QUEUE_BYTES
    overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST

    def open(self, scope: ApplicationScope, who: str) -> Subscription:
        return scope.open_stream(
            who,
            source=self.source,
            queue_limit=self.queue_limit,
            queue_bytes=self.queue_bytes,
            overflow=self.overflow,
        )


@contextlib.contextmanager
def monitor(
    handler: CallbackHandler,
    param: Any = None,
    *,
    source: SourceChoice | None = None,
    queue_limit: int = DEFAULT_QUEUE_LIMIT,
    queue_bytes: int = DEFAULT_QUEUE_BYTES,
    overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
) -> Iterator[ApplicationScope]:
    """``with monitor(handler, param) as scope:`` monitors for the duration of the block.

    Subscribes the handler (``source``, ``queue_limit``, ``queue_bytes``, ``overflow``: as
    ``ApplicationScope.subscribe`` takes them)
    and detaches it on the way out, also on an exception; the handler has had every event
    queued for it delivered when the block is left. Other subscribers (the scope's own
    handler, other blocks, streams) are left alone. Raises MonitorError if this handler is
    already subscribed.
    """
    scope = ApplicationScope.shared()
    subscription = scope.subscribe(
        handler,
        param,
        source=source,
        queue_limit=queue_limit,
        queue_bytes=queue_bytes,
        overflow=overflow,
    )
    try:
        yield scope
    finally:
        subscription.close()


#: An async consumer yields to the event loop after this many events that were ready at once:
#: during a process storm events are always ready, and other tasks (and a cancel) must run.
_YIELD_EVERY = 64


class _LoopWaker:
    """Wakes the coroutine waiting in ``__anext__``; holds no reference to the stream, so a
    stream dropped by ``break`` is not kept alive by the scope's fan-out."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiter: asyncio.Future[None] | None = None

    def __call__(self) -> None:  # on the retrieval thread
        if self.waiter is None:
            return  # nobody waits: the consumer looks at the window before it waits
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:
            pass  # the loop is closed: nobody waits

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _check_times(timeout: float | None, duration: float | None) -> None:
    for name, value in (("timeout", timeout), ("duration", duration)):
        if value is not None and value < 0:
            raise ValueError(f"{name} must not be negative")


class _Stream:
    """What the sync and async streams share: the subscription, its end, its counts."""

    def __init__(
        self,
        kinds: frozenset[EventKind] | None,
        timeout: float | None,
        duration: float | None,
        buffer: int,
        options: StreamOptions,
        who: str,
    ) -> None:
        _check_times(timeout, duration)
        if buffer < 1:
            raise ValueError("buffer must hold at least 1 event")
        self._kinds = kinds
        self.timeout = timeout
        self._deadline = None if duration is None else time.monotonic() + duration
        self._batch: Iterator[QueuedItem] = iter(())
        self._closed = True  # until started: __del__ of a stream that failed to start is a no-op
        self._scope = ApplicationScope.shared()
        self._subscription = options.open(self._scope, who)
        self._closed = False

    @property
    def lost(self) -> int:
        """Events lost to this stream so far: kernel losses and what its window dropped
        while the consumer fell behind. The stream goes on."""
        return self._subscription.lost

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> MonitorStats:
        """This stream's counts (``ApplicationScope.stats()`` has the whole scope's)."""
        return self._subscription.stats()

    def _until(self) -> float | None:
        """When the wait for the next event ends (time.monotonic()): idle timeout or duration."""
        idle = None if self.timeout is None else time.monotonic() + self.timeout
        if self._deadline is None or idle is None:
            return self._deadline if idle is None else idle
        return min(idle, self._deadline)

    def _ready(self) -> QueuedItem | None:
        """The next matching event of the batch in hand, else None."""
        kinds = self._kinds
        for item in self._batch:
            if kinds is None or item.kind in kinds:
                return item
        return None

    def _fetch(self, until: float | None) -> bool:
        """Take the next batch from the window, waiting until ``until``; False when that
        time came with nothing, or the stream has ended."""
        got = self._subscription.take(until)
        if got is None:
            return False
        batch, lost = got
        if lost:
            log.warning("%d process events were lost before reaching the stream", lost)
        self._batch = iter(batch)
        return bool(batch) or bool(lost)

    def _end(self) -> None:
        """The iteration is over: close, and raise MonitorError if it ended because the
        kernel side failed (not because of a timeout, a close or a stop elsewhere)."""
        error = self._subscription.failure
        self.close()
        if error is not None:
            raise MonitorError(f"process monitoring stopped: {error}") from error

    def close(self) -> None:
        """Detach (the last subscriber out releases the kernel side); idempotent, callable
        from any thread. Unread events are discarded."""
        if self._closed:
            return
        self._closed = True
        self._batch = iter(())
        self._subscription.discard()

    def __del__(self) -> None:
        # A loop left by ``break`` drops the stream: detach, as a generator's finally would.
        if not getattr(self, "_closed", True):
            self.close()


class EventStream(_Stream):
    """Blocking iterator of QueuedItems returned by :func:`watch`."""

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> QueuedItem:
        if self._closed:
            raise StopIteration
        until = self._until()
        while True:
            item = self._ready()
            if item is not None:
                return item
            if self._closed or not self._fetch(until):
                self._end()
                raise StopIteration

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
    source: SourceChoice | None = None,
    queue_limit: int = DEFAULT_QUEUE_LIMIT,
    queue_bytes: int = DEFAULT_QUEUE_BYTES,
    overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
) -> EventStream:
    """``for item in watch(kinds=..., timeout=...)``: process events as they happen.

    Monitoring starts before ``watch`` returns, so nothing that happens after the call is
    missed. ``kinds`` keeps only those kinds (EventKind or its value, e.g. ``"exec"``).
    Any number of streams, handlers and ``monitor()`` blocks may run at once: each is one
    subscriber of the process-wide ApplicationScope.

    The iteration ends when:

    - ``timeout`` seconds pass with no (matching) event: an *idle* timeout, like
      ``queue.get(timeout=)``, not an error;
    - ``duration`` seconds have passed since the call: a total time limit;
    - the stream is closed: ``close()`` (from any thread, e.g. a signal handler's helper),
      leaving ``with watch() as events:``, or leaving the ``for`` loop by ``break`` or an
      exception (the dropped stream closes itself, like a generator; ``with`` or ``close()``
      make the moment explicit). A stream kept after ``break`` blocks nobody: its window
      fills and drops its own events, counted;
    - the scope was shut down (the interpreter's exit), after what was queued for it.

    When it ends the stream detaches; the last subscriber out releases every thread and
    handle. ``lost`` counts events that were lost to this stream. Raises MonitorError from
    the iteration, after the events queued before it, when monitoring stopped because the
    kernel side failed. ``queue_limit``, ``queue_bytes`` and ``overflow`` bound this
    stream's window (and the kernel queue, if this stream starts the kernel side);
    ``source`` replaces the kernel source, only if no other subscriber is running (else
    MonitorError). ``buffer`` is accepted for compatibility and no longer used.
    """
    # Named parameters, not **options: a misspelt or unsupported one (match=) is a TypeError
    # naming watch() at the call, and a type checker catches it.
    options = StreamOptions(source, queue_limit, queue_bytes, overflow)
    return EventStream(kind_set(kinds), timeout, duration, buffer, options, "watch()")


class AsyncEventStream(_Stream):
    """Asynchronous iterator of QueuedItems returned by :func:`awatch`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        kinds: frozenset[EventKind] | None,
        timeout: float | None,
        duration: float | None,
        buffer: int,
        options: StreamOptions,
    ) -> None:
        self._loop = loop
        self._ready_in_a_row = 0
        self._waker = _LoopWaker(loop)
        super().__init__(kinds, timeout, duration, buffer, options, "awatch()")
        self._subscription.wake = self._waker

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> QueuedItem:
        until = self._until()
        waker, loop = self._waker, self._loop
        while not self._closed:
            item = self._ready()
            if item is not None:
                self._ready_in_a_row += 1
                if self._ready_in_a_row >= _YIELD_EVERY:
                    self._ready_in_a_row = 0
                    await self._yield_to_loop()
                return item
            # Wait for a wake-up, announced before looking at the window: none is missed.
            waiter = waker.waiter = loop.create_future()
            try:
                got = self._subscription.take(0.0)  # does not wait
                if got is None:
                    break
                if got != ((), 0):
                    batch, lost = got
                    if lost:
                        log.warning("%d process events were lost before reaching the stream", lost)
                    self._batch = iter(batch)
                    continue
                left = None if until is None else until - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._ready_in_a_row = 0  # about to wait: the loop runs the other tasks
                # Every change of the window wakes us (an offer, the end, a close): the only
                # timeout is the stream's own. asyncio.wait, not wait_for: wait_for (before
                # 3.12) can swallow a cancel that comes as the wake-up does.
                await asyncio.wait((waiter,), timeout=left)
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
        """Detach; takes milliseconds at most (nothing waits for a handler), so it runs inline."""
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
    source: SourceChoice | None = None,
    queue_limit: int = DEFAULT_QUEUE_LIMIT,
    queue_bytes: int = DEFAULT_QUEUE_BYTES,
    overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
) -> AsyncEventStream:
    """``async for item in awatch(kinds=..., timeout=...)``: :func:`watch` for asyncio.

    Call it from a coroutine (it binds to the running loop). Same arguments, same end
    conditions and the same back-pressure as :func:`watch`: the stream's own window drops
    by its policy when the consumer falls behind, and ``lost`` counts it; nothing waits for
    the loop, and the loop waits for nothing but its own window. Events reach the loop
    through ``call_soon_threadsafe``, one wake-up per batch while it waits. Cancelling the
    task that waits for the next event ends the stream; so do ``aclose()`` and leaving
    ``async with awatch() as events:``. If no other subscriber runs, starting subscribes to
    the kernel and waits for its answer (a few milliseconds) on the calling thread.
    """
    loop = asyncio.get_running_loop()
    options = StreamOptions(source, queue_limit, queue_bytes, overflow)
    return AsyncEventStream(loop, kind_set(kinds), timeout, duration, buffer, options)
