#!/usr/bin/env python3
"""Log every process event as one JSON object per line (for jq, Loki, Elasticsearch...).

    python examples/json_log.py                       # until Ctrl+C, to stdout
    python examples/json_log.py --duration 60 --output events.jsonl

Each line is the agent's versioned record, the one ``procobsrv watch --json`` writes and
``procobsrv schema`` describes (``schema_version``, ``id``, ``host``, ``time``... and every
event field); a loss is a record of kind ``lost`` with its ``count``, so a consumer can tell
a quiet system from a dropped burst.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any, TextIO

from procobsrv import ApplicationScope, CallbackHandler, QueuedItem
from procobsrv.agent import RecordMaker
from procobsrv.agent.records import Record, dumps


class JsonLogHandler(CallbackHandler):
    """Writes one JSON line per event. Runs on the retrieval thread, one call at a time."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.records = RecordMaker()  # host, boot id, stable event ids

    def write(self, record: Record) -> None:
        self.out.write(dumps(record) + "\n")
        self.out.flush()  # one line at a time: a reader (tail -f, a shipper) sees it at once

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        self.write(self.records.event(item))

    def on_events_lost(self, count: int, param: Any) -> None:
        self.write(self.records.lost(count))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--output", help="append to this file instead of stdout")
    args = parser.parse_args()

    out = open(args.output, "a", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scope = ApplicationScope.get_instance(JsonLogHandler(out))
    scope.start_monitoring()  # raises MonitorError saying what to do (privileges, namespace)
    try:
        print("json_log: watching; Ctrl+C to stop", file=sys.stderr, flush=True)
        stop.wait(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        scope.stop_monitoring()  # delivers what is still queued, then returns
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
