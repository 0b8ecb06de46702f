"""The JetStream stream's settings from the command line's ``--nats-*`` options (shared by
``watch --output nats://`` and ``collect``, apart from both so that neither imports the
other)."""

from __future__ import annotations

import argparse
from typing import Any


def stream_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "stream": args.nats_stream,
        "replicas": args.nats_replicas,
        "retention": args.nats_retention,
        "max_age": args.nats_max_age,
    }
