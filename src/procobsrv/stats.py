"""MonitorStats: the counts of one subscriber, or of the whole scope."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .events import EventKind


@dataclass(frozen=True)
class MonitorStats:
    """Counts of one subscriber, or of the whole scope (the current or last session).

    For the whole scope the per-subscriber counts are summed over every subscriber the
    session had: with one subscriber they are that subscriber's.
    """

    delivered: dict[EventKind, int] = field(default_factory=dict)
    #: Events reported to on_events_lost (or a stream's ``lost``): kernel losses plus overflow.
    lost: int = 0
    #: Of ``lost``, events the user-mode queue or the subscriber's window dropped because
    #: the subscriber fell behind (by its event or byte bound).
    queue_overflow: int = 0
    handler_errors: int = 0
    #: Events held in user mode now: the kernel queue plus the subscribers' windows.
    queued: int = 0
    #: Why monitoring stopped on its own (the handler's ``on_error`` got it too), else None.
    error: BaseException | None = None
    #: Whole scope: events taken from the kernel queue and handed to the subscribers.
    received: int = 0
    #: Subscribers attached now.
    subscribers: int = 0
    #: A step of stopping that failed (e.g. the kernel source's close); logged too. Every
    #: other step ran anyway.
    stop_error: BaseException | None = None
    #: Estimated bytes held in user mode now (memory.item_bytes), as ``queued``.
    queued_bytes: int = 0

    @property
    def total(self) -> int:
        return sum(self.delivered.values())


def summed(parts: Iterable[MonitorStats], **whole: Any) -> MonitorStats:
    """Several subscribers' counts added up; ``whole``: the fields that belong to the scope
    itself (``queued``, ``received``, ``error``...)."""
    parts = list(parts)
    delivered: Counter[EventKind] = Counter()
    for p in parts:
        delivered.update(p.delivered)
    return MonitorStats(
        delivered=dict(delivered),
        lost=sum(p.lost for p in parts),
        queue_overflow=sum(p.queue_overflow for p in parts),
        handler_errors=sum(p.handler_errors for p in parts),
        **whole,
    )
