"""A subscriber's window: the bounded hand-off between the retrieval thread and one consumer.

The retrieval thread :meth:`offers <Window.offer>` each drained batch; the consumer (a
delivery thread, or a stream's own thread or event loop) :meth:`takes <Window.take>` up to
CHUNK events at a time. An offer never waits: what does not fit the window's bounds (events
and estimated bytes, counting the part the consumer is working on) is dropped by the
subscriber's policy and counted as lost to this subscriber only. Batches are shared with
the other subscribers' windows, never changed (see ``bounded.py``).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Sequence

from .bounded import CHUNK, BoundedBatches, Bounds
from .events import QueuedItem

__all__ = ["CHUNK", "Window", "WindowState"]


class WindowState(enum.Enum):
    OPEN = "open"  # taking offers
    DRAINING = "draining"  # no more offers: the consumer takes what is held, then ends
    ABANDONED = "abandoned"  # nothing more is taken, not even what is held


class Window:
    """Bounded FIFO of batches for one consumer, with its own losses and end."""

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self._batches = BoundedBatches(bounds)
        #: Called (on the offering thread, outside the lock) when the window stops being
        #: empty or ends: how a consumer on an event loop is woken.
        self.wake: Callable[[], None] | None = None
        self._pending_lost = 0  # losses not yet told to the consumer
        self.lost = 0  # every loss told (or to be told) to the consumer
        self.overflowed = 0  # of those, what this window dropped
        self.state = WindowState.OPEN
        self._handed_back = False  # DRAINING only until the consumer has taken what is held
        #: The state is ABANDONED: read without the lock, per event, by a delivery loop.
        self.abandoned = False
        self._cond = threading.Condition(threading.Lock())

    @property
    def held(self) -> int:
        """Events waiting for the consumer, and the part it is working on."""
        return self._batches.held

    @property
    def held_bytes(self) -> int:
        return self._batches.held_bytes

    # -- the retrieval thread's side ---------------------------------------------------
    def offer(self, items: Sequence[QueuedItem], nbytes: int, lost: int) -> None:
        """Take a batch (``nbytes`` its estimated bytes) and the losses to report before it;
        never waits for the consumer."""
        with self._cond:
            if self.state is not WindowState.OPEN:
                return
            dropped = self._batches.add(items, nbytes)
            if dropped:
                self.overflowed += dropped
                lost += dropped
            if lost:
                self._pending_lost += lost
                self.lost += lost
            self._cond.notify()
        if self.wake is not None:
            self.wake()

    def count_lost(self, lost: int) -> None:
        """Losses told to the consumer without passing through the window (a lone handler
        called by the retrieval thread): counted all the same."""
        self.lost += lost

    def finish(self) -> None:
        """No more offers: the consumer may still take what is held."""
        self._drain(handing_back=False)

    def hand_back(self) -> None:
        """As :meth:`finish`, for a while: the consumer takes what is held and ends, then
        :meth:`reopen` opens the window again for the next consumer (unless it was finished
        or abandoned meanwhile, for good)."""
        self._drain(handing_back=True)

    def _drain(self, handing_back: bool) -> None:
        with self._cond:
            if self.state is WindowState.OPEN:
                self.state = WindowState.DRAINING
                self._handed_back = handing_back
            elif not handing_back:
                self._handed_back = False
            self._cond.notify_all()
        if self.wake is not None:
            self.wake()

    def reopen(self) -> bool:
        """Take offers again after :meth:`hand_back`; False if the window has ended."""
        with self._cond:
            if self.state is WindowState.DRAINING and self._handed_back:
                self.state, self._handed_back = WindowState.OPEN, False
                return True
            return False

    def abandon(self) -> None:
        """Nothing more is taken; what the window holds is discarded."""
        with self._cond:
            self.state = WindowState.ABANDONED
            self.abandoned = True
            self._batches.clear()
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
            batches = self._batches
            batches.release()  # the previous part is done with
            while not batches.waiting and not self._pending_lost:
                if self.state is not WindowState.OPEN:
                    return None
                left = None if until is None else until - time.monotonic()
                if left is not None and left <= 0:
                    return (), 0
                self._cond.wait(left)
            if self.state is WindowState.ABANDONED:
                return None
            part: Sequence[QueuedItem] = batches.take(CHUNK)[0] if batches.waiting else ()
            lost, self._pending_lost = self._pending_lost, 0
            return part, lost
