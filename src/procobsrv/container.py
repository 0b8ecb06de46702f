"""The article's QueueContainer: a queue guarded by a mutex and an element-available event."""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Sequence

from .events import QueuedItem
from .platform import Platform, SyncEvent

log = logging.getLogger(__name__)

#: Default bound: about 50 MB of events, some 20 s of a process storm with a stalled handler.
DEFAULT_QUEUE_LIMIT = 100_000


class OverflowPolicy(enum.Enum):
    """What a full queue gives up. Either way the loss is counted and reported."""

    DROP_OLDEST = "drop-oldest"  # default: keep what is happening now
    DROP_NEWEST = "drop-newest"  # keep the earliest history intact


class QueueContainer:
    """Producer/consumer hand-off between the monitor and retrieval threads.

    Invariant: the element-available event is set exactly while the queue holds items,
    unreported losses or news of the producer's failure; all change only under the mutex,
    so it costs one system call per empty-to-non-empty transition, not one per event.
    """

    def __init__(
        self,
        platform: Platform,
        limit: int = DEFAULT_QUEUE_LIMIT,
        policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
    ) -> None:
        if limit < 1:
            raise ValueError("queue limit must be at least 1")
        self.limit = limit
        self.policy = policy
        self._items: deque[QueuedItem] = deque()
        self._lost = 0  # losses not yet reported to the handler
        self.overflowed = 0  # events this queue dropped because it was full
        #: Why the producer stopped for good (set once, after its last append).
        self.failure: BaseException | None = None
        self._mutex = platform.new_mutex()
        self.element_available: SyncEvent = platform.new_event()

    def __len__(self) -> int:
        return len(self._items)

    def append(self, items: Sequence[QueuedItem], lost: int = 0) -> None:
        """Queue a batch (the article's Append), plus the kernel's count of events lost."""
        with self._mutex:
            was_empty = not self._items and not self._lost
            queue = self._items
            excess = len(queue) + len(items) - self.limit
            if excess <= 0:
                queue.extend(items)
            elif self.policy is OverflowPolicy.DROP_NEWEST:
                queue.extend(items[: len(items) - excess])
            elif len(items) >= self.limit:
                queue.clear()
                queue.extend(items[len(items) - self.limit :])
            else:  # make room first: the queue never holds more than the limit, not even briefly
                for _ in range(excess):
                    queue.popleft()
                queue.extend(items)
            if excess > 0:
                self.overflowed += excess
                lost += excess
            self._lost += lost
            if was_empty and (queue or self._lost):
                self.element_available.set()

    def fail(self, error: BaseException) -> None:
        """The producer has failed and will append nothing more: wake the consumer to say so."""
        with self._mutex:
            self.failure = error
            self.element_available.set()

    def drain(self) -> tuple[list[QueuedItem], int]:
        """Take everything queued and the losses to report; resets the event. The items
        come as a list: the fan-out hands out parts of it by slicing."""
        with self._mutex:
            items, self._items = self._items, deque()
            lost, self._lost = self._lost, 0
            self.element_available.clear()
        return list(items), lost

    def close(self) -> None:
        self.element_available.close()
        self._mutex.close()
