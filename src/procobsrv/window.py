"""A subscriber's window: the bounded hand-off between the retrieval thread and one consumer.

The retrieval thread :meth:`offers <Window.offer>` each drained batch; the consumer (a
delivery thread, or a stream's own thread or event loop) :meth:`takes <Window.take>` up to
CHUNK events at a time. An offer never waits: what does not fit the window's bounds (events
and estimated bytes, counting the part the consumer is working on) is dropped by the
subscriber's policy and counted as lost to this subscriber only. Batches are shared with
the other subscribers' windows, never changed; a window that must drop part of one keeps a
trimmed copy, so that a dropped event is not kept alive by it.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from .container import CHUNK, OverflowPolicy
from .events import QueuedItem
from .memory import prefix_within, suffix_within

__all__ = ["CHUNK", "Window", "WindowState"]


class WindowState(enum.Enum):
    OPEN = "open"  # taking offers
    DRAINING = "draining"  # no more offers: the consumer takes what is held, then ends
    ABANDONED = "abandoned"  # nothing more is taken, not even what is held


class _Entry:
    """One offered batch in the window: the items from ``start`` on, and their bytes."""

    __slots__ = ("items", "nbytes", "start")

    def __init__(self, items: Sequence[QueuedItem], nbytes: int) -> None:
        self.items, self.start, self.nbytes = items, 0, nbytes

    def __len__(self) -> int:
        return len(self.items) - self.start


class Window:
    """Bounded FIFO of batches for one consumer, with its own losses and end."""

    def __init__(self, limit: int, byte_limit: int, policy: OverflowPolicy) -> None:
        if limit < 1:
            raise ValueError("queue limit must be at least 1")
        if byte_limit < 1:
            raise ValueError("queue byte limit must be at least 1")
        self.limit = limit
        self.byte_limit = byte_limit
        self.policy = policy
        #: Called (on the offering thread, outside the lock) when the window stops being
        #: empty or ends: how a consumer on an event loop is woken.
        self.wake: Callable[[], None] | None = None
        self._entries: deque[_Entry] = deque()
        self._events = 0  # held: in the entries and the part taken last
        self._bytes = 0
        self._taken = (0, 0)  # the part taken last, until the next take: (events, bytes)
        self._pending_lost = 0  # losses not yet told to the consumer
        self.lost = 0  # every loss told (or to be told) to the consumer
        self.overflowed = 0  # of those, what this window dropped
        self.state = WindowState.OPEN
        #: The state is ABANDONED: read without the lock, per event, by a delivery loop.
        self.abandoned = False
        self._cond = threading.Condition(threading.Lock())

    @property
    def held(self) -> int:
        """Events waiting for the consumer, and the part it is working on."""
        return self._events

    @property
    def held_bytes(self) -> int:
        return self._bytes

    # -- the retrieval thread's side ---------------------------------------------------
    def offer(self, items: Sequence[QueuedItem], nbytes: int, lost: int) -> None:
        """Take a batch (``nbytes`` its estimated bytes) and the losses to report before it;
        never waits for the consumer."""
        with self._cond:
            if self.state is not WindowState.OPEN:
                return
            if self._events + len(items) > self.limit or self._bytes + nbytes > self.byte_limit:
                items, nbytes, dropped = self._make_room(items, nbytes)
                self.overflowed += dropped
                lost += dropped
            if items:
                self._entries.append(_Entry(items, nbytes))
                self._events += len(items)
                self._bytes += nbytes
            if lost:
                self._pending_lost += lost
                self.lost += lost
            self._cond.notify()
        if self.wake is not None:
            self.wake()

    def _make_room(
        self, items: Sequence[QueuedItem], nbytes: int
    ) -> tuple[Sequence[QueuedItem], int, int]:
        """Apply the policy (under the lock): what is left of ``items``, its bytes, and how
        many events were dropped, waiting ones included."""
        if self.policy is OverflowPolicy.DROP_NEWEST:
            keep, kept_bytes = prefix_within(
                items, self.limit - self._events, self.byte_limit - self._bytes
            )
            return (items if keep == len(items) else items[:keep]), kept_bytes, len(items) - keep
        taken_events, taken_bytes = self._taken  # what the consumer works on stays
        keep, nbytes = suffix_within(
            items, self.limit - taken_events, self.byte_limit - taken_bytes
        )
        dropped = len(items) - keep
        if keep < len(items):
            items = items[len(items) - keep :]
        entries = self._entries
        while entries and (
            self._events + keep > self.limit or self._bytes + nbytes > self.byte_limit
        ):
            head = entries.popleft()  # the oldest waiting events go first
            self._events -= len(head)
            self._bytes -= head.nbytes
            rest = head.items[head.start :]
            left, left_bytes = suffix_within(
                rest, self.limit - self._events - keep, self.byte_limit - self._bytes - nbytes
            )
            dropped += len(rest) - left
            if left:
                entries.appendleft(_Entry(rest[len(rest) - left :], left_bytes))
                self._events += left
                self._bytes += left_bytes
        return items, nbytes, dropped

    def finish(self) -> None:
        """No more offers: the consumer may still take what is held."""
        with self._cond:
            if self.state is WindowState.OPEN:
                self.state = WindowState.DRAINING
            self._cond.notify_all()
        if self.wake is not None:
            self.wake()

    def abandon(self) -> None:
        """Nothing more is taken; what the window holds is discarded."""
        with self._cond:
            self.state = WindowState.ABANDONED
            self.abandoned = True
            self._entries.clear()
            self._events = self._bytes = 0
            self._taken = (0, 0)
            self._cond.notify_all()
        if self.wake is not None:
            self.wake()

    def forget_after_fork(self) -> None:
        """In a forked child: whatever thread of ours survived must take nothing more."""
        # No lock: a thread that did not come along may hold it. No wake-up: an event loop
        # does not run on in a forked child, so no awatch() consumer there waits for one.
        self.state = WindowState.ABANDONED
        self.abandoned = True

    # -- the consumer's side -------------------------------------------------------------
    def take(self, until: float | None = None) -> tuple[Sequence[QueuedItem], int] | None:
        """The next events (up to CHUNK) and the losses to report before them; waits until
        ``until`` (time.monotonic(), None: for ever). ``((), 0)`` when that time came with
        nothing; None once the window has ended and nothing is left."""
        with self._cond:
            done_events, done_bytes = self._taken  # the previous part is done with
            self._events -= done_events
            self._bytes -= done_bytes
            self._taken = (0, 0)
            entries = self._entries
            while not entries and not self._pending_lost:
                if self.state is not WindowState.OPEN:
                    return None
                left = None if until is None else until - time.monotonic()
                if left is not None and left <= 0:
                    return (), 0
                self._cond.wait(left)
            if self.state is WindowState.ABANDONED:
                return None
            part: Sequence[QueuedItem] = ()
            if entries:
                entry = entries[0]
                size = len(entry)
                if size <= CHUNK:
                    entries.popleft()
                    part = entry.items if entry.start == 0 else entry.items[entry.start :]
                    self._taken = (size, entry.nbytes)
                else:
                    part = entry.items[entry.start : entry.start + CHUNK]
                    share = entry.nbytes * CHUNK // size
                    entry.start += CHUNK
                    entry.nbytes -= share
                    self._taken = (CHUNK, share)
            lost, self._pending_lost = self._pending_lost, 0
            return part, lost
