"""Memory with a stalled handler: 100,000 many-argument execs queued against the byte bound.

Run as ``python -m benchmarks.memory [EVENTS [ARGC [QUEUE_BYTES]]]``: a source made for the
purpose produces EVENTS exec events of ARGC short arguments each (about 5 KB of Python
objects apiece) as fast as the monitor fetches them, while the handler is stuck on the
first one. Unbounded, they would hold EVENTS x 5 KB (500 MB for 100,000); the pipeline
must hold no more than its byte bound (``queue_bytes``, default
``memory.DEFAULT_QUEUE_BYTES``) and count the rest as lost. Prints one JSON line: peak RSS
growth, the bound, what was held and lost.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from procobsrv import ApplicationScope, CallbackHandler, EventKind, QueuedItem
from procobsrv.host import current_platform
from procobsrv.memory import DEFAULT_QUEUE_BYTES, item_bytes
from procobsrv.platform import Batch, KernelSource, SyncEvent

#: Events made per fetch (one kernel read's worth).
PER_FETCH = 256


class GeneratedSource(KernelSource):
    """Makes ``events`` exec events with ``argc`` arguments each, PER_FETCH per fetch,
    ready until all are made (each has a unique argv: nothing is shared between them)."""

    def __init__(self, events: int, argc: int) -> None:
        self.events, self.argc = events, argc
        self.made = 0
        self.done = threading.Event()
        self._ready: SyncEvent | None = None

    def open(self) -> None:
        self._ready = current_platform().new_event()
        self._ready.set()

    @property
    def wait_handle(self) -> int:
        assert self._ready is not None
        return self._ready.wait_handle

    def fetch_batch(self) -> Batch:
        n = min(PER_FETCH, self.events - self.made)
        items = [self.make(self.made + i) for i in range(n)]
        self.made += n
        if self.made >= self.events and self._ready is not None:
            self._ready.clear()
            self.done.set()
        return Batch(items)

    def make(self, i: int) -> QueuedItem:
        argv = [f"{i:07d}{j:04d}" for j in range(self.argc)]
        return QueuedItem(
            EventKind.EXEC,
            100_000 + i,
            1,
            time.time(),
            image="/usr/bin/tool",
            command_line=argv,
            command_line_size=sum(len(a) + 1 for a in argv),
        )

    def close(self) -> None:
        if self._ready is not None:
            self._ready.close()
            self._ready = None


class Stalled(CallbackHandler):
    """Stuck on its first event until released."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self.delivered = self.lost = 0

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        self.inside.set()
        self.release.wait(120)
        self.delivered += 1

    def on_events_lost(self, count: int, param: Any) -> None:
        self.lost += count


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def measure(events: int, argc: int, queue_bytes: int) -> dict[str, Any]:
    source = GeneratedSource(events, argc)
    handler = Stalled()
    scope = ApplicationScope.get_instance(handler)
    rss0 = status_kib("VmRSS")
    scope.start_monitoring(source=source, queue_bytes=queue_bytes)
    held_bytes = 0
    while not source.done.wait(0.05):
        held_bytes = max(held_bytes, scope.stats().queued_bytes)
    time.sleep(0.2)  # the last fetch reaches the queue
    stats = scope.stats()
    held_bytes = max(held_bytes, stats.queued_bytes)
    peak = status_kib("VmHWM")
    handler.release.set()
    scope.stop_monitoring()
    final = scope.stats()
    sample = source.make(0)  # the same shape as every event
    return {
        "events": events,
        "argc": argc,
        "estimated_bytes_per_event": item_bytes(sample),
        "unbounded_mib": events * item_bytes(sample) / 2**20,
        "queue_bytes_mib": queue_bytes / 2**20,
        "held_bytes_peak_mib": held_bytes / 2**20,
        "held_events_at_end": stats.queued,
        "rss_before_mib": rss0 / 1024,
        "rss_peak_mib": peak / 1024,
        "rss_growth_mib": (peak - rss0) / 1024,
        "delivered": handler.delivered,
        "lost": final.lost,
        "exact": handler.delivered + handler.lost == events,
    }


def main() -> None:
    args = sys.argv[1:]
    events = int(args[0]) if args else 100_000
    argc = int(args[1]) if len(args) > 1 else 64
    queue_bytes = int(args[2]) if len(args) > 2 else DEFAULT_QUEUE_BYTES
    print(json.dumps(measure(events, argc, queue_bytes)))


if __name__ == "__main__":
    main()
