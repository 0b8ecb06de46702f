"""``procobsrv collect nats://...``: the events of every host, read back from the stream by a
durable consumer, written as JSON lines; it resumes where it stopped.

A fetched batch is written, made durable (``fsync`` when the output is a regular file), and
only then acknowledged: a crash between the two repeats at most that batch's lines on
restart, never skips one (at least once; the ``id`` field tells repeats apart). A write that
fails (a full disk) keeps the lines written whole (the cut one is truncated away),
acknowledges only those, hands the rest back to the stream and ends collect with status 1
and the count of what was written.

A message that is not a procobsrv record (not JSON, a JSON value that
:func:`~procobsrv.agent.records.is_record` refuses, or one ``--format`` cannot map) is not an
event: it is counted, logged with its stream sequence, written to ``--dead-letter FILE`` when
given, and terminated (never delivered again), so that it cannot hold back the messages
behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import itertools
import json
import logging
import os
import re
import signal
import stat
import sys
from collections.abc import Callable

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from ..errors import MonitorError
from .formats import MAPPINGS
from .jetstream import (
    SUBJECT_PREFIX,
    Problems,
    connect,
    describe,
    ensure_stream,
    stream_config,
)
from .nats_access import NatsAccess
from .outputs import open_append
from .records import Record, dumps, is_record

#: Messages fetched from the stream at a time.
BATCH = 256
#: Messages handed out but not yet acknowledged, at most: this many fetches' worth.
ACK_PENDING_BATCHES = 10
#: How long one fetch waits for messages before the loop looks at ``stop`` again.
FETCH_TIMEOUT = 0.5
#: Seconds the server gets to confirm a batch's acks.
FLUSH_TIMEOUT = 5
#: Exit status when writing the output failed: what was not written stays in the stream.
WRITE_FAILED_STATUS = 1
log = logging.getLogger(__name__)


class RecordFilter:
    """``watch``'s filters on records: kinds, and a regex searched in the image and in the
    arguments joined by spaces. Loss records always pass (unless ``--kind`` leaves them out)."""

    def __init__(self, kinds: list[str] | None, pattern: re.Pattern[str] | None) -> None:
        self.kinds = set(kinds) if kinds else None
        self.pattern = pattern

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


class WriteFailed(Exception):
    """Writing lines failed after the first ``written`` of them were made durable."""

    def __init__(self, written: int, error: OSError) -> None:
        super().__init__(written, error)
        self.written = written
        self.error = error


class LineFile:
    """Lines appended to ``path`` (opened by :func:`~procobsrv.agent.outputs.open_append`, as
    ``watch --output`` opens it: no link another user planted, no file of another user's, a
    cut last line ended first), or written to stdout when ``path`` is None. :meth:`write` puts
    lines in the kernel and, for a regular file, on the disk (``fsync``): only then may their
    messages be acknowledged."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        if path is None and sys.stdout is None:  # started with fd 1 closed (`collect >&-`)
            raise MonitorError("standard output is closed: give --output FILE")
        self._fd = self._open() if path is not None else sys.stdout.fileno()

    def _open(self) -> int:
        assert self.path is not None
        return open_append(self.path)

    def write(self, lines: list[str]) -> None:
        """All of ``lines``, in one ``write()`` when it takes them, then ``fsync``. On a
        failure (a full disk), a regular file keeps only the lines written whole and made
        durable, and :class:`WriteFailed` says how many."""
        if not lines:
            return
        encoded = [(line + "\n").encode() for line in lines]
        ends = list(itertools.accumulate(map(len, encoded)))
        data = memoryview(b"".join(encoded))
        regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        start = os.lseek(self._fd, 0, os.SEEK_END) if regular else 0
        sent = 0
        try:
            while sent < len(data):
                sent += os.write(self._fd, data[sent:])
            if regular:
                os.fsync(self._fd)
            return
        except OSError as exc:
            whole = bisect.bisect_right(ends, sent)
            if regular:  # no cut line left behind: the next run writes it again, whole
                whole = self._keep(start, ends[whole - 1] if whole else 0, whole)
            raise WriteFailed(whole, exc) from exc

    def _keep(self, start: int, size: int, lines: int) -> int:
        """Truncates the file to ``size`` bytes after ``start`` and makes that durable;
        returns ``lines``, or 0 when even that failed (the file is then cut back to ``start``
        if it can be; if not, the next run appends the lines again after a newline, as
        :func:`~procobsrv.agent.outputs.open_append` ends a cut last line)."""
        try:
            os.ftruncate(self._fd, start + size)
            os.fsync(self._fd)
            return lines
        except OSError:
            try:
                os.ftruncate(self._fd, start)
            except OSError as exc:
                log.warning("could not take a failed write back out of %s: %s", self.path, exc)
            return 0

    def reopen(self) -> None:
        """SIGHUP with ``--output`` (logrotate): the path anew; the old file stays on failure."""
        if self.path is None:
            return
        try:
            fd = self._open()
        except MonitorError as exc:
            log.error("%s; still writing to the file already open", exc)
            return
        old, self._fd = self._fd, fd
        os.close(old)
        log.info("reopened %s", self.path)

    def close(self) -> None:
        if self.path is not None and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Collector:
    """Copies the stream into ``out``, counting what it wrote and what was not an event."""

    def __init__(
        self,
        out: LineFile,
        keep: RecordFilter,
        dead_letter: LineFile | None,
        mapping: Callable[[Record], Record] = MAPPINGS["json"],
    ) -> None:
        self.out = out
        self.keep = keep
        self.dead_letter = dead_letter
        #: How each kept record is written (``--format``: json, ecs, otel).
        self.mapping = mapping
        self.written = 0
        self.malformed = 0

    async def run(
        self, access: NatsAccess, durable: str, options: dict[str, object], stop: asyncio.Event
    ) -> None:
        """Until ``stop`` is set; raises :class:`WriteFailed` when a write fails."""
        problems = Problems()
        name = f"procobsrv collect {durable}"
        connecting = asyncio.ensure_future(connect(access, name, problems))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not connecting.done():  # stopped while no server answered
            connecting.cancel()
            log.warning(
                "no NATS server answered at %s (%s)",
                access.shown,
                problems.last or "no answer",
            )
            return
        nc = connecting.result()
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
                try:
                    await self.take(msgs)
                finally:
                    await flushed(nc)
        finally:
            await nc.close()

    async def take(self, msgs: list[Msg]) -> None:
        """Writes a batch, then acknowledges what it wrote (and terminates its malformed
        messages); a failed write raises :class:`WriteFailed` once the part written is acked."""
        lines: list[str] = []
        bad: list[Msg] = []
        line_of: list[bool] = []  # per message: does it have a line in ``lines``
        for msg in msgs:
            line = self.line(msg.data)
            if line is None:
                bad.append(msg)
            elif line:
                lines.append(line)
            line_of.append(bool(line))
        if bad:
            self.set_aside(bad)  # raises before any ack when it fails
        failure: WriteFailed | None = None
        try:
            self.out.write(lines)
            done = len(lines)
        except WriteFailed as exc:
            failure, done = exc, exc.written
        self.written += done
        terminated = {id(msg) for msg in bad}
        for msg, has_line in zip(msgs, line_of, strict=True):
            if has_line:
                if done == 0:  # not written: handed back for the next run, at once
                    await msg.nak()
                    continue
                done -= 1
            await (msg.term() if id(msg) in terminated else msg.ack())
        if failure is not None:
            raise failure

    def line(self, data: bytes) -> str | None:
        """The line a message's record is written as; "" when the filters leave it out; None
        when it is not a procobsrv record."""
        record = parse(data)
        if record is None:
            return None
        if not self.keep(record):
            return ""
        try:
            return dumps(self.mapping(record))
        except Exception:  # a field of the wrong type (the record is someone else's): any
            return None  # exception of the pure mapping is about this record alone

    def set_aside(self, bad: list[Msg]) -> None:
        for msg in bad:
            self.malformed += 1
            level = logging.WARNING if self.malformed == 1 else logging.DEBUG
            log.log(
                level,
                "skipped a message that is not an event (not a procobsrv record) on %s, stream "
                "sequence %d%s",
                msg.subject,
                msg.metadata.sequence.stream,
                "; later ones are counted in the summary" if self.malformed == 1 else "",
            )
        if self.dead_letter is not None:
            self.dead_letter.write(
                [
                    dumps(
                        {
                            "stream_sequence": msg.metadata.sequence.stream,
                            "subject": msg.subject,
                            "data": base64.b64encode(msg.data).decode(),
                        }
                    )
                    for msg in bad
                ]
            )

    def summary(self) -> str:
        text = f"{self.written} lines collected"
        if self.malformed:
            dead = f" (written to {self.dead_letter.path})" if self.dead_letter else ""
            text += f", {self.malformed} malformed messages skipped{dead}"
        return text


async def flushed(nc: Client) -> None:
    """Waits until the server has what was sent (the acks): an ack still in this process's
    buffer at a stop would be lost, and its line written again by the next run."""
    try:
        await nc.flush(timeout=FLUSH_TIMEOUT)
    except (nats.errors.Error, asyncio.TimeoutError) as exc:
        log.debug("acks not confirmed by the server (%s): the next run may repeat lines", exc)


def parse(data: bytes) -> Record | None:
    """The record a message carries, or None when it is not one (see :func:`is_record`)."""
    try:
        record = json.loads(data)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return None
    return record if is_record(record) else None


def collect(args: argparse.Namespace, access: NatsAccess, options: dict[str, object]) -> int:
    """The command: ``args`` as parsed, ``access`` to the servers, ``options`` the stream's."""
    out = LineFile(args.output)
    dead_letter = LineFile(args.dead_letter) if args.dead_letter else None
    collector = Collector(
        out, RecordFilter(args.kind, args.match), dead_letter, MAPPINGS[args.format or "json"]
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, stop.set)
        loop.add_signal_handler(signal.SIGHUP, out.reopen)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        await collector.run(access, args.durable, options, stop)

    print("procobsrv: collecting; Ctrl+C to stop", file=sys.stderr, flush=True)
    failure: OSError | None = None
    try:
        asyncio.run(main())
    except WriteFailed as exc:
        failure = exc.error
    except nats.errors.Error as exc:  # the stream refused (e.g. replicas > 1 on one server)
        raise MonitorError(f"collect stopped: {describe(exc)}") from exc
    finally:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the loop that reopened is gone
        out.close()
        if dead_letter is not None:
            dead_letter.close()
        print(f"procobsrv: {collector.summary()}", file=sys.stderr)
    if failure is not None:
        print(
            f"procobsrv: writing the output failed ({failure.strerror or failure}); "
            "what was not written stays in the stream for the next run",
            file=sys.stderr,
        )
        return WRITE_FAILED_STATUS
    return 0
