"""``procobsrv watch``: live process events until Ctrl+C / SIGTERM, then a summary."""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import threading
from types import FrameType
from typing import Any, TextIO

from ..errors import MonitorError
from ..events import EventKind
from ..handlers import FilterHandler, JsonLinesHandler, LinesHandler
from ..realtime import realtime_threads
from ..scope import ApplicationScope
from .format import HEADER, as_line


class ConsoleHandler(FilterHandler):
    """Matching events, one line each (aligned text or JSON), and a line for each loss; if
    monitoring stops on an error, ``done`` is set so that the watch ends and says why."""

    def __init__(
        self,
        out: TextIO,
        done: threading.Event,
        *,
        json_lines: bool = False,
        kinds: set[EventKind] | None = None,
        pattern: re.Pattern[str] | None = None,
    ) -> None:
        if json_lines:
            lines: LinesHandler = JsonLinesHandler(out)
        else:
            lines = LinesHandler(out, as_line, lambda count: f"!! {count} events lost")
        super().__init__(lines, kinds=kinds, match=pattern)
        self.done = done
        self.error: BaseException | None = None

    def on_error(self, error: BaseException, param: Any) -> None:
        self.error = error
        self.done.set()


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "watch", help="print process events live", description="Print process events live."
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--kind",
        action="append",
        choices=[k.value for k in EventKind],
        help="only these kinds (repeatable); default: all",
    )
    p.add_argument("--match", metavar="REGEX", help="only events whose image or command line match")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument(
        "--source",
        default="auto",
        help="kernel source: auto (default: ebpf when this process may load it, else "
        "connector), ebpf, connector (Linux); driver (Windows)",
    )
    p.add_argument(
        "--realtime",
        action="store_true",
        help="run the monitoring threads SCHED_FIFO for lower latency (root or CAP_SYS_NICE)",
    )
    p.set_defaults(run=run)


def fallback_note(requested: str, scope: ApplicationScope) -> str:
    """What the watch line says when "auto" had to fall back to the connector on Linux."""
    if requested != "auto" or type(scope.source).__name__ != "ConnectorSource":
        return ""
    return (
        " with the connector (command lines of short-lived processes may be missing; "
        "root or CAP_BPF + CAP_PERFMON gives the eBPF source)"
    )


def run(args: argparse.Namespace) -> int:
    done = threading.Event()
    handler = ConsoleHandler(
        sys.stdout,
        done,
        json_lines=args.json,
        kinds={EventKind(k) for k in args.kind} if args.kind else None,
        pattern=re.compile(args.match) if args.match else None,
    )

    def finish(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {s: signal.signal(s, finish) for s in (signal.SIGINT, signal.SIGTERM)}
    scope = ApplicationScope.get_instance(handler)
    try:
        with realtime_threads() if args.realtime else contextlib.nullcontext():
            scope.start_monitoring(source=args.source)  # its threads inherit the policy
        print(f"procobsrv: watching{fallback_note(args.source, scope)}; Ctrl+C to stop",
              file=sys.stderr, flush=True)  # fmt: skip
        if not args.json:
            print(HEADER, flush=True)
        done.wait(args.duration)
    finally:
        scope.stop_monitoring()
        for s, h in previous.items():
            signal.signal(s, h)
    stats = scope.stats()  # every event delivered, matching or not
    seen = ", ".join(f"{stats.delivered.get(k, 0)} {k.value}" for k in EventKind)
    print(f"procobsrv: {stats.total} events ({seen}), {stats.lost} lost", file=sys.stderr)
    if handler.error is not None:
        raise MonitorError(f"monitoring stopped: {handler.error}") from handler.error
    return 0
