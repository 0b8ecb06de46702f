#!/usr/bin/env python3
"""Alert when a program starts whose command line matches a pattern.

    python examples/cmdline_alert.py 'curl .*\\| *(ba)?sh'
    python examples/cmdline_alert.py --ignore-case --duration 30 'nc -e|ncat .*-e'

One ``ALERT`` line per match on stdout, with pid, parent, user and the command line.
Replace ``alert()`` with what your site needs (syslog, a webhook, kill the process...).
"""

from __future__ import annotations

import argparse
import pwd
import re
import shlex
import signal
import sys
import threading
from typing import Any

from procobsrv import ApplicationScope, CallbackHandler, EventKind, QueuedItem

# A new program shows up as EXEC on Linux: a fork (CREATED) still runs the parent's program
# and carries its command line. Windows creates a process and its program in one step.
NEW_PROGRAM = EventKind.EXEC if sys.platform.startswith("linux") else EventKind.CREATED


def user_name(uid: int | None) -> str:
    if uid is None:
        return "?"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class CommandLineAlert(CallbackHandler):
    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.alerts = 0

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        if item.kind is not NEW_PROGRAM:
            return
        if item.command_line is None:
            # The process ended before /proc could be read: say so rather than miss it.
            print(f"unknown command line: pid {item.process_id} ({item.image or '?'})", flush=True)
            return
        line = shlex.join(item.command_line)
        if self.pattern.search(line):
            self.alerts += 1
            self.alert(item, line)

    def alert(self, item: QueuedItem, line: str) -> None:
        print(
            f"ALERT pid {item.process_id} parent {item.parent_id} "
            f"user {user_name(item.uid)}: {line}",
            flush=True,
        )

    def on_events_lost(self, count: int, param: Any) -> None:
        print(f"WARNING {count} events lost: a match may have been missed", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pattern", help="regular expression searched in the command line")
    parser.add_argument("-i", "--ignore-case", action="store_true")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args()

    handler = CommandLineAlert(re.compile(args.pattern, re.IGNORECASE if args.ignore_case else 0))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scope = ApplicationScope.get_instance(handler)
    scope.start_monitoring()
    try:
        print(
            f"cmdline_alert: watching for /{args.pattern}/; Ctrl+C to stop",
            file=sys.stderr,
            flush=True,
        )
        stop.wait(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        scope.stop_monitoring()
    print(f"cmdline_alert: {handler.alerts} alerts", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
