"""How many bytes an event holds in memory, estimated cheaply, and the default byte bound.

The queues of the pipeline (the QueueContainer, each subscriber's window) are bounded in
bytes as well as in events: one exec with a long argv holds far more than a fork or an
exit (a 4 KiB argv of short words is some 30 KB of Python objects), so an event count alone
does not bound memory. The estimate uses what the item already says about itself (the
lengths of its paths, the argv's length and its size in bytes) and costs a few attribute
reads per event; it counts
an argv shared by several items (a fork inheriting its parent's) once per item, so it errs
on the high side.
"""

from __future__ import annotations

from collections.abc import Sequence

from .events import QueuedItem

#: The default bound of every queue and window: 64 MiB of events (about 150,000 execs of a
#: short command line, or 2,000 of a 4 KiB argv of short words).
DEFAULT_QUEUE_BYTES = 64 * 2**20

#: A QueuedItem, its short strings (comm, cgroup) and the headers of its paths, without the
#: paths' text and the argv.
ITEM_BYTES = 500
#: Each argument: a str object's header and the list's pointer to it (its text is added).
ARG_BYTES = 64


def batch_bytes(items: Sequence[QueuedItem]) -> int:
    """Estimated bytes of a batch: the one formula (it runs for every event, on the monitor
    thread, so it is a loop over the batch rather than a call per item)."""
    total = ITEM_BYTES * len(items)
    for item in items:
        # Paths are chosen by any user (a deep cwd): up to 4 KiB each, so counted.
        if path := item.image:
            total += len(path)
        if path := item.cwd:
            total += len(path)
        if path := item.script:
            total += len(path)
        argv = item.command_line
        if argv:
            size = item.command_line_size
            if size is None or item.command_line_truncated:
                size = sum(map(len, argv))
            total += ARG_BYTES * len(argv) + size
    return total


def item_bytes(item: QueuedItem) -> int:
    """Estimated bytes ``item`` holds (see the module's doc)."""
    return batch_bytes((item,))


def prefix_within(items: Sequence[QueuedItem], events: int, nbytes: int) -> tuple[int, int]:
    """How many of the first ``items`` fit in ``events`` events and ``nbytes`` bytes, and
    their bytes (for a queue that must give some up: only then is it counted one by one)."""
    count = total = 0
    for item in items[: max(0, events)]:
        size = item_bytes(item)
        if total + size > nbytes:
            break
        count, total = count + 1, total + size
    return count, total


def suffix_within(items: Sequence[QueuedItem], events: int, nbytes: int) -> tuple[int, int]:
    """:func:`prefix_within` from the end: how many of the last ``items`` fit, their bytes."""
    count, total = prefix_within(items[::-1][: max(0, events)], events, nbytes)
    return count, total
