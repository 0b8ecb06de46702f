"""procobsrv through its public API, in a process of its own so that its cost can be measured.

Run as ``python -m benchmarks.listener OUT [QUEUE_LIMIT] [--realtime]`` (``--realtime``: the
monitoring threads run SCHED_FIFO, as with ``procobsrv watch --realtime``). Prints ``ready``
once subscribed; on SIGTERM stops monitoring and writes JSON to OUT:
``{"events": [[kind, pid, exit_code, signal, kernel_ns, handler_ns], ...], "lost": N}``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from typing import Any

from procobsrv import ApplicationScope, CallbackHandler, QueuedItem
from procobsrv.realtime import realtime_threads

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
    args = sys.argv[1:]
    realtime = "--realtime" in args
    args = [a for a in args if a != "--realtime"]
    out = args[0]
    queue_limit = int(args[1]) if len(args) > 1 else None
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    handler = RecordingHandler()
    scope = ApplicationScope.get_instance(handler)
    with realtime_threads() if realtime else contextlib.nullcontext():
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
