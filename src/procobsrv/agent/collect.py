"""``procobsrv collect nats://...``: the events of every host, read back from the stream by a
durable consumer, written as JSON lines; it resumes where it stopped.

Each message is acknowledged after its line was written (or filtered out): a crash between
the two repeats at most the unacknowledged lines on restart, never skips one (at least once;
the ``id`` field tells repeats apart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import sys
from collections.abc import Callable

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from .formats import MAPPINGS
from .jetstream import SUBJECT_PREFIX, connect, ensure_stream, server_urls, stream_config
from .outputs import FileSink, StreamSink
from .records import Record
from .sink import Sink
from .stream_options import stream_options

#: Messages fetched from the stream at a time.
BATCH = 256
#: Messages handed out but not yet acknowledged, at most: this many fetches' worth.
ACK_PENDING_BATCHES = 10
#: How long one fetch waits for messages before the loop looks at ``stop`` again.
FETCH_TIMEOUT = 0.5
log = logging.getLogger(__name__)


class RecordFilter:
    """``watch``'s filters on records: kinds, and a regex searched in the image and in the
    arguments joined by spaces. Loss records always pass (unless ``--kind`` leaves them out)."""

    def __init__(self, kinds: list[str] | None, match: str | None) -> None:
        self.kinds = set(kinds) if kinds else None
        self.pattern = re.compile(match) if match else None

    def __call__(self, record: Record) -> bool:
        kind = record.get("kind")
        if self.kinds is not None and kind not in self.kinds:
            return False
        if self.pattern is None or kind == "lost":
            return True
        image = record.get("image")
        argv = record.get("command_line")
        return bool(
            (isinstance(image, str) and self.pattern.search(image))
            or (isinstance(argv, list) and self.pattern.search(" ".join(map(str, argv))))
        )


async def collect_into(
    sink: Sink,
    servers: list[str],
    durable: str,
    keep: RecordFilter,
    options: dict[str, object],
    stop: asyncio.Event,
    mapping: Callable[[Record], Record] | None = None,
) -> int:
    """Copies the stream to ``sink`` until ``stop`` is set (each record through ``mapping``,
    if given: ``--format``); returns the lines written."""
    connecting = asyncio.ensure_future(connect(servers, f"procobsrv collect {durable}"))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not connecting.done():  # stopped while no server answered
        connecting.cancel()
        log.warning("no NATS server answered at %s", ", ".join(servers))
        return 0
    nc = connecting.result()
    written = 0
    try:
        js = nc.jetstream()
        config = stream_config(
            str(options["stream"]),
            int(str(options["replicas"])),
            str(options["retention"]),
            float(str(options["max_age"])),
        )
        await ensure_stream(js, config)
        sub = await js.pull_subscribe(
            f"{SUBJECT_PREFIX}.>",
            durable=durable,
            stream=config.name,
            config=ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                max_ack_pending=ACK_PENDING_BATCHES * BATCH,
            ),
        )
        while not stop.is_set():
            try:
                msgs = await sub.fetch(BATCH, timeout=FETCH_TIMEOUT)
            except asyncio.TimeoutError:  # nats-py raises both kinds; its own is a subclass
                continue
            for msg in msgs:
                record = json.loads(msg.data)
                if keep(record):
                    sink.send(record if mapping is None else mapping(record))
                    written += 1
                await msg.ack()
    finally:
        await nc.close()
    return written


def collect(args: argparse.Namespace) -> int:
    sink: Sink = FileSink(args.output) if args.output else StreamSink(sys.stdout)
    keep = RecordFilter(args.kind, args.match)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, stop.set)
        if args.output:
            loop.add_signal_handler(signal.SIGHUP, sink.reopen)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        return await collect_into(
            sink,
            server_urls(args.servers),
            args.durable,
            keep,
            stream_options(args),
            stop,
            MAPPINGS[args.format or "json"],
        )

    print("procobsrv: collecting; Ctrl+C to stop", file=sys.stderr, flush=True)
    try:
        written = asyncio.run(main())
    finally:
        sink.close()
    print(f"procobsrv: {written} lines collected", file=sys.stderr)
    return 0
