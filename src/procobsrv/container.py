"""The article's QueueContainer: a queue guarded by a mutex and an element-available event."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

from .bounded import CHUNK, BoundedBatches, Bounds, OverflowPolicy
from .events import QueuedItem
from .memory import DEFAULT_QUEUE_BYTES, batch_bytes
from .platform import Platform, SyncEvent

log = logging.getLogger(__name__)

__all__ = ["CHUNK", "DEFAULT_QUEUE_LIMIT", "Bounds", "Drained", "OverflowPolicy", "QueueContainer"]

#: Default bound in events (the byte bound, memory.DEFAULT_QUEUE_BYTES, usually comes first
#: for execs with long command lines).
DEFAULT_QUEUE_LIMIT = 100_000


class Drained(NamedTuple):
    """What :meth:`QueueContainer.drain` hands over."""

    items: list[QueuedItem]
    #: Events lost since the last drain (the kernel's and this queue's overflow).
    lost: int
    #: The items' estimated bytes (memory.batch_bytes).
    nbytes: int


class QueueContainer:
    """Producer/consumer hand-off between the monitor and retrieval threads.

    Invariant: the element-available event is set while the queue holds items, unreported
    losses or news of the producer's failure, and cleared (under the mutex) once a drain
    leaves nothing: one system call per empty-to-non-empty transition, not one per event.
    ``append`` sets it just after releasing the mutex, so that the thread it wakes does not
    find the mutex still taken and sleep again (measured: half the retrieval thread's
    wake-ups); that thread may then find the batch already drained (one spurious wake-up,
    never a missed one: the event is set after the items are in).

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
        self.bounds = Bounds(limit, byte_limit, policy)
        self._queue = BoundedBatches(self.bounds)
        self._lost = 0  # losses not yet reported to the handler
        self.overflowed = 0  # events this queue dropped because it was full
        #: Why the producer stopped for good (set once, after its last append).
        self.failure: BaseException | None = None
        self._mutex = platform.new_mutex()
        self.element_available: SyncEvent = platform.new_event()

    def __len__(self) -> int:
        """Events held: queued, and the batch the consumer is working on."""
        return self._queue.held

    @property
    def held_bytes(self) -> int:
        return self._queue.held_bytes

    def append(self, items: Sequence[QueuedItem], lost: int = 0) -> None:
        """Queue a batch (the article's Append), plus the kernel's count of events lost."""
        nbytes = batch_bytes(items)  # outside the lock
        with self._mutex:
            queue = self._queue
            was_empty = not queue.waiting and not self._lost
            dropped = queue.add(items, nbytes)
            if dropped:
                self.overflowed += dropped
                lost += dropped
            self._lost += lost
            wake = was_empty and (queue.waiting or self._lost)
        if wake:
            self.element_available.set()

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
            queue = self._queue
            queue.release()  # (if done() was not called)
            items, nbytes = queue.take(most)
            lost, self._lost = self._lost, 0
            if not queue.waiting:
                self.element_available.clear()
        return Drained(items, lost, nbytes)

    def done(self) -> None:
        """The consumer is done with the batch it drained last (it no longer counts)."""
        with self._mutex:
            self._queue.release()

    def close(self) -> None:
        self.element_available.close()
        self._mutex.close()
