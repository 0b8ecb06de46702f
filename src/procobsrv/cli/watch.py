"""``procobsrv watch``: live process events until Ctrl+C / SIGTERM, then a summary."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from collections import Counter
from types import FrameType
from typing import Any, TextIO

from ..events import EventKind, QueuedItem
from ..handler import CallbackHandler
from ..scope import ApplicationScope
from .format import HEADER, as_json, as_line


class ConsoleHandler(CallbackHandler):
    """Prints matching events, one line each; counts what it saw and what was lost."""

    def __init__(
        self,
        out: TextIO,
        *,
        json_lines: bool = False,
        kinds: set[EventKind] | None = None,
        pattern: re.Pattern[str] | None = None,
    ) -> None:
        self.out = out
        self.render = as_json if json_lines else as_line
        self.kinds = kinds
        self.pattern = pattern
        self.seen: Counter[EventKind] = Counter()
        self.lost = 0

    def matches(self, item: QueuedItem) -> bool:
        if self.kinds is not None and item.kind not in self.kinds:
            return False
        if self.pattern is None:
            return True
        text = " ".join(filter(None, [item.image, *(item.command_line or ())]))
        return self.pattern.search(text) is not None

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        self.seen[item.kind] += 1
        if self.matches(item):
            self.out.write(self.render(item) + "\n")
            self.out.flush()  # one line at a time, for `| jq` and log shippers

    def on_events_lost(self, count: int, param: Any) -> None:
        self.lost += count
        if self.render is as_line:
            self.out.write(f"!! {count} events lost\n")
        else:
            self.out.write(f'{{"kind":"lost","count":{count}}}\n')
        self.out.flush()


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
    handler = ConsoleHandler(
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
    seen = ", ".join(f"{handler.seen[k]} {k.value}" for k in EventKind)
    total = sum(handler.seen.values())
    print(f"procobsrv: {total} events ({seen}), {handler.lost} lost", file=sys.stderr)
    return 0
