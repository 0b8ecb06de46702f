"""procobsrv through its public API, in a process of its own so that its cost can be measured.

Run as ``python -m benchmarks.listener OUT [--source connector|ebpf|service] [--queue-limit N]
[--realtime]`` (``--realtime``: the monitoring threads run SCHED_FIFO, as with ``procobsrv
watch --realtime``). Prints ``ready`` once subscribed, or ``unavailable: <why>`` and exits
when the source cannot start here; on SIGTERM stops monitoring and writes JSON to OUT:
``{"events": [[kind, pid, exit_code, signal, kernel_ns, handler_ns, image, argv], ...],
"lost": N, "threads": {tid: name}}`` (the names of its threads, for the
harness's wake-up counts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
import time
from typing import Any

from procobsrv import ApplicationScope, CallbackHandler, MonitorError, QueuedItem
from procobsrv.linux.realtime import realtime_threads
from procobsrv.platform import KernelSource

KIND_CODE = {"created": "fork", "exec": "exec", "exited": "exit"}
#: Source name (as ``start_monitoring(source=...)`` and ``watch --source`` spell it) -> the
#: class in ``procobsrv.linux`` (benchmarks.opening times a fresh instance's open).
SOURCES = {"connector": "ConnectorSource", "ebpf": "EbpfSource", "service": "ServiceSource"}


class RecordingHandler(CallbackHandler):
    """Minimal work per event: one tuple appended (the clock read is the latency probe)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.lost = 0

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        self.events.append(
            (
                item.kind,
                item.process_id,
                item.exit_code,
                item.signal,
                item.monotonic_ns,
                time.monotonic_ns(),
                item.image,
                item.command_line,
            )
        )

    def on_events_lost(self, count: int, param: Any) -> None:
        self.lost += count


def new_source(name: str) -> KernelSource:
    """A fresh Linux source by name (not opened)."""
    from procobsrv import linux

    source: KernelSource = getattr(linux, SOURCES[name])()
    return source


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.listener")
    p.add_argument("out")
    p.add_argument("--source", choices=sorted(SOURCES), default="connector")
    p.add_argument("--queue-limit", type=int)
    p.add_argument("--realtime", action="store_true")
    args = p.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    handler = RecordingHandler()
    scope = ApplicationScope.get_instance(handler)
    kwargs: dict[str, Any] = {"queue_limit": args.queue_limit} if args.queue_limit else {}
    try:
        with realtime_threads() if args.realtime else contextlib.nullcontext():
            scope.start_monitoring(source=args.source, **kwargs)
    except MonitorError as exc:
        print(f"unavailable: {exc}", flush=True)
        return
    print("ready", flush=True)
    done.wait()
    threads = {t.native_id: t.name for t in threading.enumerate()}
    scope.stop_monitoring()
    events = [[KIND_CODE[k.value], *rest] for k, *rest in handler.events]
    with open(args.out, "w") as f:
        json.dump({"events": events, "lost": handler.lost, "threads": threads}, f)


if __name__ == "__main__":
    main()
