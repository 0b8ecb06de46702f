"""``procobsrv serve``: the host's one kernel subscription, served to local users' programs
(docs/how-to/local-service.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from typing import Any

from ..errors import MonitorError
from ..service.listener import DEFAULT_SOCKET, Listening, activated, listen
from ..service.rule import Rule, group_id
from ..service.server import CLIENT_BOUNDS, EventService
from .arguments import integer
from .signals import on_signals, signal_numbers

log = logging.getLogger(__name__)

EXAMPLES = """\
examples:
  sudo procobsrv serve                          serve /run/procobsrv/events.sock
  sudo procobsrv serve --group procobsrv        ... members of procobsrv see every process
  procobsrv watch                               (any user) its own processes, through it
"""


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve process events to local users' programs (root)",
        description="Own the kernel subscription and serve process events to local programs "
        "over a Unix socket. Root and the members of --group see every process; any other "
        "user sees the processes whose real or effective uid is theirs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--socket",
        default=DEFAULT_SOCKET,
        metavar="PATH",
        help=f"where to listen (default {DEFAULT_SOCKET}; ignored under socket activation)",
    )
    p.add_argument("--group", metavar="NAME", help="members of this group see every process")
    p.add_argument(
        "--client-queue",
        type=integer(1, 1 << 24),
        default=CLIENT_BOUNDS.limit,
        metavar="EVENTS",
        help="events held for a client that does not read, before its own are dropped "
        f"(counted, and told to it; default {CLIENT_BOUNDS.limit})",
    )
    p.add_argument(
        "--source",
        choices=("auto", "ebpf", "connector"),
        default="auto",
        help="kernel source: auto (default: ebpf when it loads, else connector)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rule = Rule(group_id(args.group) if args.group else None)
    sock = activated()
    listening = Listening(sock, "(systemd socket)") if sock is not None else listen(args.socket)
    try:
        service = EventService(
            listening.sock,
            rule,
            source="kernel" if args.source == "auto" else args.source,
            client_bounds=replace(CLIENT_BOUNDS, limit=args.client_queue),
        )
        stop = dict.fromkeys(signal_numbers("SIGINT", "SIGTERM", "SIGHUP"), service.stop)
        who = f"root and group {args.group}" if args.group else "root"
        print(
            f"procobsrv: serving {service.source} events on {listening.path} ({who} see every "
            "process, other users their own); Ctrl+C to stop",
            file=sys.stderr,
            flush=True,
        )
        with on_signals(stop):
            service.run()
    finally:
        listening.close()
    if service.failure is not None:
        raise MonitorError(f"monitoring stopped: {service.failure}") from service.failure
    return 0
