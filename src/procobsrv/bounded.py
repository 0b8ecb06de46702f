"""Batches of events in arrival order, bounded in events and in estimated bytes.

What the QueueContainer holds between the monitor and the retrieval thread, and what each
subscriber's Window holds between the retrieval thread and its consumer. Not thread-safe:
its owner calls it under its own lock.

A batch is kept as it came (a list shared with other windows is never changed): taking
part of one moves an offset, and only dropping part of one makes a trimmed copy, so that
a dropped event is not kept alive by it.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from .events import QueuedItem
from .memory import prefix_within, suffix_within

#: The most events a consumer takes at a time (from the QueueContainer, or from a
#: subscriber's window): what it is working on cannot be dropped, so this bounds how much
#: stale history DROP_OLDEST can still deliver after a stall, while a take still moves
#: many events.
CHUNK = 256


class OverflowPolicy(enum.Enum):
    """What a full queue gives up. Either way the loss is counted and reported."""

    DROP_OLDEST = "drop-oldest"  # default: keep what is happening now
    DROP_NEWEST = "drop-newest"  # keep the earliest history intact


@dataclass(frozen=True)
class Bounds:
    """How much a queue may hold, and what it gives up when full."""

    limit: int
    byte_limit: int
    policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("queue limit must be at least 1")
        if self.byte_limit < 1:
            raise ValueError("queue byte limit must be at least 1")


class _Entry:
    """One batch: its items from ``start`` on, and their estimated bytes."""

    __slots__ = ("items", "nbytes", "start")

    def __init__(self, items: Sequence[QueuedItem], nbytes: int) -> None:
        self.items, self.start, self.nbytes = items, 0, nbytes

    def __len__(self) -> int:
        return len(self.items) - self.start


class BoundedBatches:
    """FIFO of batches holding at most ``bounds.limit`` events and ``bounds.byte_limit``
    bytes, counting the part taken last until :meth:`release` (what the consumer is working
    on, which cannot be dropped). :meth:`add` makes room by ``bounds.policy`` and says how
    many it dropped.
    """

    def __init__(self, bounds: Bounds) -> None:
        self.limit, self.byte_limit, self.policy = bounds.limit, bounds.byte_limit, bounds.policy
        self._entries: deque[_Entry] = deque()
        self._waiting = 0  # events in the entries
        self._waiting_bytes = 0
        self._taken = (0, 0)  # the part taken last, until release(): (events, bytes)

    @property
    def waiting(self) -> int:
        """Events not taken yet."""
        return self._waiting

    @property
    def held(self) -> int:
        """Events held: waiting, and the part taken last."""
        return self._waiting + self._taken[0]

    @property
    def held_bytes(self) -> int:
        return self._waiting_bytes + self._taken[1]

    def add(self, items: Sequence[QueuedItem], nbytes: int) -> int:
        """Queue a batch (``nbytes``: its estimated bytes); returns how many events were
        dropped to stay within the bounds (of this batch, or waiting ones)."""
        if self.held + len(items) > self.limit or self.held_bytes + nbytes > self.byte_limit:
            items, nbytes, dropped = self._make_room(items, nbytes)
        else:
            dropped = 0
        if items:
            self._entries.append(_Entry(items, nbytes))
            self._waiting += len(items)
            self._waiting_bytes += nbytes
        return dropped

    def _make_room(
        self, items: Sequence[QueuedItem], nbytes: int
    ) -> tuple[Sequence[QueuedItem], int, int]:
        """What is left of ``items``, its bytes, and how many events the policy dropped."""
        if self.policy is OverflowPolicy.DROP_NEWEST:
            keep, kept_bytes = prefix_within(
                items, self.limit - self.held, self.byte_limit - self.held_bytes
            )
            return items[:keep], kept_bytes, len(items) - keep
        # DROP_OLDEST: the newest of the batch first (the part taken stays), then room is
        # made among the oldest waiting.
        room, room_bytes = self.limit - self._taken[0], self.byte_limit - self._taken[1]
        keep, nbytes = suffix_within(items, room, room_bytes)
        dropped = len(items) - keep
        if keep < len(items):
            items = items[len(items) - keep :]
        entries = self._entries
        while entries and (
            self._waiting + keep > room or self._waiting_bytes + nbytes > room_bytes
        ):
            head = entries.popleft()
            self._waiting -= len(head)
            self._waiting_bytes -= head.nbytes
            rest = head.items[head.start :]
            left, left_bytes = suffix_within(
                rest, room - self._waiting - keep, room_bytes - self._waiting_bytes - nbytes
            )
            dropped += len(rest) - left
            if left:
                entries.appendleft(_Entry(rest[len(rest) - left :], left_bytes))
                self._waiting += left
                self._waiting_bytes += left_bytes
        return items, nbytes, dropped

    def take(self, most: int) -> tuple[list[QueuedItem], int]:
        """The oldest ``most`` waiting events (0: all), as a list, and their bytes; they
        count as held until :meth:`release`. A batch taken whole is handed on as it is."""
        entries = self._entries
        if len(entries) == 1 and entries[0].start == 0 and (not most or self._waiting <= most):
            entry = entries.popleft()  # the common case: one batch, whole
            part = entry.items if isinstance(entry.items, list) else list(entry.items)
            taken = (len(part), entry.nbytes)
        else:
            part, nbytes = [], 0
            want = most or self._waiting
            while entries and len(part) < want:
                entry = entries[0]
                n = min(len(entry), want - len(part))
                part.extend(entry.items[entry.start : entry.start + n])
                if n == len(entry):
                    entries.popleft()
                    nbytes += entry.nbytes
                else:  # the rest stays first in line, with its share of the bytes
                    share = entry.nbytes * n // len(entry)
                    entry.start += n
                    entry.nbytes -= share
                    nbytes += share
            taken = (len(part), nbytes)
        self._waiting -= taken[0]
        self._waiting_bytes -= taken[1]
        self._taken = (self._taken[0] + taken[0], self._taken[1] + taken[1])
        return part, taken[1]

    def release(self) -> None:
        """The consumer is done with what it took: it no longer counts."""
        self._taken = (0, 0)

    def clear(self) -> None:
        """Drop everything, taken part included (nothing is counted)."""
        self._entries.clear()
        self._waiting = self._waiting_bytes = 0
        self._taken = (0, 0)
