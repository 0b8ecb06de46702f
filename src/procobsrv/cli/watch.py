"""``procobsrv watch``: live process events until Ctrl+C / SIGTERM, then a summary."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from types import FrameType
from typing import Any, TextIO

from ..events import EventKind
from ..handlers import FilterHandler, JsonLinesHandler, LinesHandler
from ..scope import ApplicationScope
from .format import HEADER, as_line


def console_handler(
    out: TextIO,
    *,
    json_lines: bool = False,
    kinds: set[EventKind] | None = None,
    pattern: re.Pattern[str] | None = None,
) -> FilterHandler:
    """Matching events, one line each (aligned text or JSON), and a line for each loss."""
    if json_lines:
        lines: LinesHandler = JsonLinesHandler(out)
    else:
        lines = LinesHandler(out, as_line, lambda count: f"!! {count} events lost")
    return FilterHandler(lines, kinds=kinds, match=pattern)


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
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    handler = console_handler(
        sys.stdout,
        json_lines=args.json,
        kinds={EventKind(k) for k in args.kind} if args.kind else None,
        pattern=re.compile(args.match) if args.match else None,
    )
    done = threading.Event()

    def finish(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {s: signal.signal(s, finish) for s in (signal.SIGINT, signal.SIGTERM)}
    scope = ApplicationScope.get_instance(handler)
    try:
        scope.start_monitoring()
        print("procobsrv: watching; Ctrl+C to stop", file=sys.stderr, flush=True)
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
    return 0
