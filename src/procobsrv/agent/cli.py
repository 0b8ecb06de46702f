"""The agent's part of the console tool: ``watch --output``, ``procobsrv schema`` and
``procobsrv collect``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..cli import arguments
from ..errors import MonitorError
from .formats import RECORD_FORMATS
from .nats_access import PASSWORD_ENV, NatsAccess, access, check_stream_name, parse_servers
from .nats_extra import needs_nats
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
#: Replicas JetStream allows a stream.
MAX_REPLICAS = 5


def add_output_options(p: argparse.ArgumentParser) -> None:
    """``--output`` and the NATS options, for ``watch``."""
    p.add_argument(
        "--output",
        type=output_target,
        metavar="FILE|nats://HOST:PORT[,...]",
        help="lines (--format json, ecs or otel) appended to FILE (reopened on SIGHUP), or "
        "records published to NATS JetStream",
    )
    add_stream_options(p)
    p.add_argument(
        "--nats-buffer",
        type=arguments.integer(1, sys.maxsize),
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
        "--nats-stream",
        type=argument(check_stream_name),
        default="PROCOBSRV",
        help="JetStream stream (default PROCOBSRV)",
    )
    p.add_argument(
        "--nats-replicas",
        type=arguments.integer(1, MAX_REPLICAS),
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
        type=arguments.age,
        default=DEFAULT_STREAM_MAX_AGE,
        metavar="SECONDS",
        help="age after which the stream drops events (default 7 days; 0: never)",
    )
    g = p.add_argument_group("NATS credentials and TLS")
    g.add_argument("--nats-creds", metavar="FILE", help="a .creds file (user JWT + NKey seed)")
    g.add_argument("--nats-nkey", metavar="FILE", help="a file holding an NKey seed (SU...)")
    g.add_argument("--nats-user", metavar="NAME", help="user name (with a password)")
    g.add_argument(
        "--nats-password-file",
        metavar="FILE",
        help=f"the password, first line of FILE (or ${PASSWORD_ENV}; never in the URL)",
    )
    g.add_argument(
        "--nats-tls-ca", metavar="FILE", help="CA certificates the server's must chain to"
    )
    g.add_argument("--nats-tls-cert", metavar="FILE", help="client certificate (PEM)")
    g.add_argument("--nats-tls-key", metavar="FILE", help="client certificate's key (PEM)")


def output_target(text: str) -> str:
    """``--output``: a file path, or NATS servers whose ports are valid."""
    return servers(text) if text.startswith("nats://") else text


def argument(check: Callable[[str], object]) -> Callable[[str], str]:
    """An option type from a check that raises MonitorError: the text, once checked."""

    def checked(text: str) -> str:
        try:
            check(text)
        except MonitorError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        return text

    checked.__name__ = check.__name__
    return checked


servers = argument(parse_servers)


def nats_access(target: str, args: argparse.Namespace) -> NatsAccess:
    """How to reach ``target`` with the credential and TLS options (a password in the URL is
    hidden from the process list here, before anything else runs)."""
    return access(
        target,
        user=args.nats_user,
        password_file=args.nats_password_file,
        creds=args.nats_creds,
        nkey=args.nats_nkey,
        tls_ca=args.nats_tls_ca,
        tls_cert=args.nats_tls_cert,
        tls_key=args.nats_tls_key,
    )


def output_from_args(args: argparse.Namespace) -> Sink | None:
    """The sink of ``--output nats://...`` (needs the ``nats`` extra); None for no
    ``--output`` or a file, which ``watch`` writes itself (``procobsrv.cli.output.Output``)."""
    if not args.output or not args.output.startswith("nats://"):
        return None
    how = nats_access(args.output, args)
    with needs_nats("--output nats://"):
        from .jetstream import JetStreamSink

    return JetStreamSink(
        args.output, buffer=args.nats_buffer, nats_access=how, **stream_options(args)
    )


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
    c.add_argument("servers", type=servers, metavar="nats://HOST:PORT[,...]")
    c.add_argument("--output", metavar="FILE", help="append to FILE (default: stdout)")
    add_format_option(c, text=False)
    c.add_argument(
        "--dead-letter",
        metavar="FILE",
        help="append the messages that are not events to FILE (JSON lines, data in base64)",
    )
    c.add_argument("--durable", default="procobsrv-collect", help="consumer name")
    c.add_argument("--kind", action="append", choices=["created", "exec", "exited", "lost"])
    arguments.add_match_and_duration(c, "image or argv")
    add_stream_options(c)
    c.set_defaults(run=run_collect)


def print_schema() -> int:
    sys.stdout.write(schema_text())
    return 0


def run_collect(args: argparse.Namespace) -> int:
    how = nats_access(args.servers, args)
    with needs_nats("collect"):
        from .collect import collect

    return collect(args, how, stream_options(args))
