"""procobsrv through its public API, in a process of its own so that its cost can be measured.

Run as ``python -m benchmarks.listener OUT [QUEUE_LIMIT]``. Prints ``ready`` once subscribed;
on SIGTERM stops monitoring and writes JSON to OUT: ``{"events": [[kind, pid, exit_code,
signal, kernel_ns, handler_ns], ...], "lost": N}``.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Any

from procobsrv import ApplicationScope, CallbackHandler, QueuedItem

KIND_CODE = {"created": "fork", "exec": "exec", "exited": "exit"}


class RecordingHandler(CallbackHandler):
    """Minimal work per event: one tuple appended (the clock read is the latency probe)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.lost = 0

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        self.events.append(
            (item.kind, item.process_id, item.exit_code, item.signal, item.monotonic_ns,
             time.monotonic_ns())
        )  # fmt: skip

    def on_events_lost(self, count: int, param: Any) -> None:
        self.lost += count


def main() -> None:
    out = sys.argv[1]
    queue_limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    handler = RecordingHandler()
    scope = ApplicationScope.get_instance(handler)
    if queue_limit:
        scope.start_monitoring(queue_limit=queue_limit)
    else:
        scope.start_monitoring()
    print("ready", flush=True)
    done.wait()
    scope.stop_monitoring()
    events = [[KIND_CODE[k.value], *rest] for k, *rest in handler.events]
    with open(out, "w") as f:
        json.dump({"events": events, "lost": handler.lost}, f)


if __name__ == "__main__":
    main()
