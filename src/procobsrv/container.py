"""The article's QueueContainer: a queue guarded by a mutex and an element-available event."""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

from .events import QueuedItem
from .memory import DEFAULT_QUEUE_BYTES, batch_bytes, prefix_within, suffix_within
from .platform import Platform, SyncEvent

log = logging.getLogger(__name__)

#: The most events a consumer takes at a time (from this queue, or from a subscriber's
#: window): what it is working on cannot be dropped, so this bounds how much stale history
#: DROP_OLDEST can still deliver after a stall, while a take still moves many events.
CHUNK = 256

#: Default bound in events (the byte bound, memory.DEFAULT_QUEUE_BYTES, usually comes first
#: for execs with long command lines).
DEFAULT_QUEUE_LIMIT = 100_000


class OverflowPolicy(enum.Enum):
    """What a full queue gives up. Either way the loss is counted and reported."""

    DROP_OLDEST = "drop-oldest"  # default: keep what is happening now
    DROP_NEWEST = "drop-newest"  # keep the earliest history intact


class Drained(NamedTuple):
    """What :meth:`QueueContainer.drain` hands over."""

    items: list[QueuedItem]
    #: Events lost since the last drain (the kernel's and this queue's overflow).
    lost: int
    #: The items' estimated bytes (memory.batch_bytes).
    nbytes: int


class QueueContainer:
    """Producer/consumer hand-off between the monitor and retrieval threads.

    Invariant: the element-available event is set exactly while the queue holds items,
    unreported losses or news of the producer's failure; all change only under the mutex,
    so it costs one system call per empty-to-non-empty transition, not one per event.

    Bounds: ``limit`` events and ``byte_limit`` estimated bytes (memory.item_bytes), counting
    the batch the consumer took last until it says it is :meth:`done` with it (with one
    subscriber the retrieval thread hands it to the handler itself, so that is what the
    handler is working on). What does not fit is dropped by ``policy`` and counted.
    """

    def __init__(
        self,
        platform: Platform,
        limit: int = DEFAULT_QUEUE_LIMIT,
        policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
        byte_limit: int = DEFAULT_QUEUE_BYTES,
    ) -> None:
        if limit < 1:
            raise ValueError("queue limit must be at least 1")
        if byte_limit < 1:
            raise ValueError("queue byte limit must be at least 1")
        self.limit = limit
        self.byte_limit = byte_limit
        self.policy = policy
        self._chunks: deque[tuple[Sequence[QueuedItem], int]] = deque()  # (items, bytes)
        self._events = 0  # events in the chunks
        self._bytes = 0
        self._in_hand = (0, 0)  # the last drained batch, until done(): (events, bytes)
        self._lost = 0  # losses not yet reported to the handler
        self.overflowed = 0  # events this queue dropped because it was full
        #: Why the producer stopped for good (set once, after its last append).
        self.failure: BaseException | None = None
        self._mutex = platform.new_mutex()
        self.element_available: SyncEvent = platform.new_event()

    def __len__(self) -> int:
        """Events held: queued, and the batch the consumer is working on."""
        return self._events + self._in_hand[0]

    @property
    def held_bytes(self) -> int:
        return self._bytes + self._in_hand[1]

    def append(self, items: Sequence[QueuedItem], lost: int = 0) -> None:
        """Queue a batch (the article's Append), plus the kernel's count of events lost."""
        nbytes = batch_bytes(items)  # outside the lock
        with self._mutex:
            was_empty = not self._events and not self._lost
            room_events = self.limit - len(self)
            room_bytes = self.byte_limit - self.held_bytes
            if len(items) > room_events or nbytes > room_bytes:
                items, nbytes, dropped = self._make_room(items, nbytes)
                self.overflowed += dropped
                lost += dropped
            if items:
                self._chunks.append((items, nbytes))
                self._events += len(items)
                self._bytes += nbytes
            self._lost += lost
            if was_empty and (self._events or self._lost):
                self.element_available.set()

    def _make_room(
        self, items: Sequence[QueuedItem], nbytes: int
    ) -> tuple[Sequence[QueuedItem], int, int]:
        """Apply the policy (under the mutex): what is left of ``items``, its bytes, and how
        many events were dropped, queued ones included."""
        in_hand_events, in_hand_bytes = self._in_hand
        if self.policy is OverflowPolicy.DROP_NEWEST:
            keep, kept_bytes = prefix_within(
                items, self.limit - len(self), self.byte_limit - self.held_bytes
            )
            return items[:keep], kept_bytes, len(items) - keep
        # DROP_OLDEST: the newest of the batch first, then room among the oldest queued.
        keep, nbytes = suffix_within(
            items, self.limit - in_hand_events, self.byte_limit - in_hand_bytes
        )
        dropped = len(items) - keep
        items = items[len(items) - keep :]
        chunks = self._chunks
        while chunks and (
            self._events + keep > self.limit - in_hand_events
            or self._bytes + nbytes > self.byte_limit - in_hand_bytes
        ):
            head, head_bytes = chunks.popleft()
            self._events -= len(head)
            self._bytes -= head_bytes
            left, left_bytes = suffix_within(
                head,
                self.limit - in_hand_events - keep - self._events,
                self.byte_limit - in_hand_bytes - nbytes - self._bytes,
            )
            dropped += len(head) - left
            if left:
                chunks.appendleft((head[len(head) - left :], left_bytes))
                self._events += left
                self._bytes += left_bytes
        return items, nbytes, dropped

    def fail(self, error: BaseException) -> None:
        """The producer has failed and will append nothing more: wake the consumer to say so."""
        with self._mutex:
            self.failure = error
            self.element_available.set()

    def drain(self, most: int = CHUNK) -> Drained:
        """Take the oldest ``most`` events queued (all of them: ``most=0``) and the losses
        to report; resets the event once nothing is left. The batch counts against the
        bounds until :meth:`done`."""
        with self._mutex:
            if not most or self._events <= most:
                chunks, self._chunks = self._chunks, deque()
                events, nbytes = self._events, self._bytes
            else:
                chunks, events, nbytes = self._take(most)
            self._events -= events
            self._bytes -= nbytes
            self._in_hand = (events, nbytes)
            lost, self._lost = self._lost, 0
            if not self._events:
                self.element_available.clear()
        if len(chunks) == 1:
            items = chunks[0][0]
            return Drained(items if isinstance(items, list) else list(items), lost, nbytes)
        return Drained([item for chunk, _ in chunks for item in chunk], lost, nbytes)

    def _take(self, most: int) -> tuple[deque[tuple[Sequence[QueuedItem], int]], int, int]:
        """The oldest chunks holding ``most`` events (the last one cut), their events and
        bytes; under the mutex."""
        taken: deque[tuple[Sequence[QueuedItem], int]] = deque()
        events = nbytes = 0
        chunks = self._chunks
        while events < most:
            head, head_bytes = chunks.popleft()
            want = most - events
            if len(head) > want:  # cut: the rest stays first in line
                part_bytes = batch_bytes(head[:want])
                chunks.appendleft((head[want:], head_bytes - part_bytes))
                head, head_bytes = head[:want], part_bytes
            taken.append((head, head_bytes))
            events += len(head)
            nbytes += head_bytes
        return taken, events, nbytes

    def done(self) -> None:
        """The consumer is done with the batch it drained last (it no longer counts)."""
        with self._mutex:
            self._in_hand = (0, 0)

    def close(self) -> None:
        self.element_available.close()
        self._mutex.close()
