"""The agent's part of the console tool: ``watch --output``, ``procobsrv schema`` and
``procobsrv collect``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import MonitorError
from .formats import RECORD_FORMATS
from .nats_extra import needs_nats
from .outputs import open_output
from .records import schema_text
from .sink import DEFAULT_STREAM_MAX_AGE, Sink
from .stream_options import stream_options

RETENTIONS = ("limits", "interest", "workqueue")
COLLECT_EXAMPLES = """\
examples:
  procobsrv collect nats://10.0.0.1:4222 --output /var/log/procobsrv/fleet.jsonl
                                          every host's events, resumed after a restart
  procobsrv collect nats://10.0.0.1:4222 --format ecs --kind exec | my-shipper
                                          exec events as ECS documents
"""


def add_output_options(p: argparse.ArgumentParser) -> None:
    """``--output`` and the NATS options, for ``watch``."""
    p.add_argument(
        "--output",
        metavar="FILE|nats://HOST:PORT[,...]",
        help="lines (--format json, ecs or otel) appended to FILE (reopened on SIGHUP), or "
        "records published to NATS JetStream",
    )
    add_stream_options(p)
    p.add_argument(
        "--nats-buffer",
        type=int,
        default=100_000,
        metavar="EVENTS",
        help="events kept while the NATS servers are unreachable (default 100000)",
    )


def add_format_option(p: argparse.ArgumentParser, *, text: bool) -> None:
    """``--format``: the shape of each line (docs/formats.md)."""
    names = ("text", *RECORD_FORMATS) if text else RECORD_FORMATS
    p.add_argument(
        "--format",
        choices=names,
        help="line format: "
        + ("text (aligned columns; the default), " if text else "")
        + "json (procobsrv records, `procobsrv schema`), ecs (Elastic Common Schema), "
        "otel (OpenTelemetry OTLP/JSON logs)",
    )


def line_format(args: argparse.Namespace) -> str:
    """The format of watch's lines from ``--format``, ``--json`` and ``--output``."""
    chosen = args.format
    if args.json:
        if chosen not in (None, "json"):
            raise MonitorError(f"--json is --format json: it contradicts --format {chosen}")
        chosen = "json"
    if not args.output:
        return chosen or "text"
    if chosen == "text":
        raise MonitorError("--output writes json, ecs or otel lines, not text")
    if args.output.startswith("nats://") and chosen not in (None, "json"):
        raise MonitorError(
            "NATS carries procobsrv's json records; give --format to `procobsrv collect`"
        )
    return chosen or "json"


def add_stream_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nats-stream", default="PROCOBSRV", help="JetStream stream (default PROCOBSRV)"
    )
    p.add_argument(
        "--nats-replicas",
        type=int,
        default=1,
        metavar="N",
        help="replicas when the stream is created (default 1; 3 on a 3-node cluster)",
    )
    p.add_argument(
        "--nats-retention",
        choices=RETENTIONS,
        default="limits",
        help="retention when the stream is created (default limits)",
    )
    p.add_argument(
        "--nats-max-age",
        type=float,
        default=DEFAULT_STREAM_MAX_AGE,
        metavar="SECONDS",
        help="age after which the stream drops events (default 7 days; 0: never)",
    )


def output_from_args(args: argparse.Namespace) -> Sink | None:
    if not args.output:
        return None
    if args.output.startswith("nats://"):
        return open_output(args.output, buffer=args.nats_buffer, **stream_options(args))
    return open_output(args.output)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "schema",
        help="print the JSON Schema of one output line",
        description="Print the JSON Schema (draft 2020-12) of one line of watch --json/--output.",
    )
    p.set_defaults(run=lambda args: print_schema())
    c: argparse.ArgumentParser = sub.add_parser(
        "collect",
        help="read the events of every host from NATS JetStream",
        description="Read the PROCOBSRV stream with a durable consumer and write JSON lines; "
        "resumes where it stopped.",
        epilog=COLLECT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("servers", metavar="nats://HOST:PORT[,...]")
    c.add_argument("--output", metavar="FILE", help="append to FILE (default: stdout)")
    add_format_option(c, text=False)
    c.add_argument("--durable", default="procobsrv-collect", help="consumer name")
    c.add_argument("--kind", action="append", choices=["created", "exec", "exited", "lost"])
    c.add_argument("--match", metavar="REGEX", help="only events whose image or argv match")
    c.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    add_stream_options(c)
    c.set_defaults(run=run_collect)


def print_schema() -> int:
    sys.stdout.write(schema_text())
    return 0


def run_collect(args: argparse.Namespace) -> int:
    with needs_nats("collect"):
        from .collect import collect

    return collect(args)
