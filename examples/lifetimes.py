#!/usr/bin/env python3
"""Measure how long processes live, from the kernel's own timestamps.

    python examples/lifetimes.py --duration 60            # summary by program at the end
    python examples/lifetimes.py --each --min-ms 100      # also one line per process

A lifetime is the exit event's kernel timestamp minus the creation event's (``start_ns``),
so it does not depend on how quickly events reached this program. The start is known for
processes created while monitoring ran (and, on Linux, for older ones whose /proc entry was
read, e.g. as the parent of a new process, to the kernel clock tick); the others are counted.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import threading
from collections import defaultdict
from typing import Any

from procobsrv import ApplicationScope, CallbackHandler, EventKind, QueuedItem


class LifetimeMeter(CallbackHandler):
    def __init__(self, each: bool, min_ms: float) -> None:
        self.each = each
        self.min_ms = min_ms
        self.by_program: defaultdict[str, list[float]] = defaultdict(list)
        self.unknown_start = 0

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        if item.kind is not EventKind.EXITED:
            return
        if not item.start_ns:
            self.unknown_start += 1  # it was already running when we started
            return
        ms = (item.monotonic_ns - item.start_ns) / 1e6
        if ms < self.min_ms:
            return
        program = item.name or "?"
        self.by_program[program].append(ms)
        if self.each:
            args = " ".join(item.command_line or [program])
            print(f"{ms:10.1f} ms  pid {item.process_id:<7} {args}", flush=True)

    def report(self) -> None:
        print(f"{'PROGRAM':<24} {'COUNT':>6} {'MEDIAN ms':>10} {'MAX ms':>10}")
        ranked = sorted(self.by_program.items(), key=lambda kv: -sum(kv[1]))
        for program, times in ranked:
            print(
                f"{program:<24} {len(times):>6} {statistics.median(times):>10.1f} "
                f"{max(times):>10.1f}"
            )
        print(f"({self.unknown_start} exits of processes whose start is unknown)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--each", action="store_true", help="print every process as it ends")
    parser.add_argument("--min-ms", type=float, default=0.0, help="ignore shorter lifetimes")
    args = parser.parse_args()

    meter = LifetimeMeter(args.each, args.min_ms)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scope = ApplicationScope.get_instance(meter)
    scope.start_monitoring()
    try:
        print("lifetimes: watching; Ctrl+C to stop", file=sys.stderr, flush=True)
        stop.wait(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        scope.stop_monitoring()  # returns after the last event was delivered: safe to report
    meter.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
