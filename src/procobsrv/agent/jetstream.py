"""``--output nats://...``: records published to NATS JetStream, at least once, in order.

The retrieval thread only appends to a bounded buffer (:meth:`JetStreamSink.send`); an asyncio
loop in its own thread does the I/O with nats-py. It publishes a batch of up to ``in_flight``
messages at once, waits for each one's ack from the stream, and drops a record from the buffer
only once acked. A failed or unacknowledged batch (server gone, cluster electing a leader) is
sent again from its first unacknowledged record; the event id goes as ``Nats-Msg-Id``, so
what the stream had already stored is not stored twice. What does not fit in the buffer while
the servers are away is counted and published, where the gap is, as a loss record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import threading
import time
from collections import deque
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from ..host import current_platform
from ..threads import FunctionThread
from .nats_access import HIDDEN, NatsAccess, access, check_stream_name
from .records import Record, RecordMaker, dumps
from .sink import DEFAULT_STREAM_MAX_AGE, Sink

log = logging.getLogger(__name__)

#: The subjects of the stream: ``procobsrv.<host>.<kind>``.
SUBJECT_PREFIX = "procobsrv"
#: How long JetStream remembers a Nats-Msg-Id to drop a retried publish.
DUPLICATE_WINDOW = 120.0
#: Seconds to wait for a server's answer on connecting, and between reconnection attempts.
CONNECT_TIMEOUT = 1
RECONNECT_WAIT = 0.2
#: Seconds between two attempts to publish a batch that failed.
RETRY_PAUSE = 0.1
#: Seconds the close gives the cancelled publisher, then the loop's thread, to end.
CANCEL_TIMEOUT = 5.0
#: One buffered message: (subject, Nats-Msg-Id, payload, is an event).
Message = tuple[str, str, bytes, bool]


def subject_token(name: str) -> str:
    """A host name as one subject token (dots and wildcards become ``_``)."""
    return re.sub(r"[.*>\s]", "_", name) or "_"


def stream_config(name: str, replicas: int, retention: str, max_age: float) -> StreamConfig:
    return StreamConfig(
        name=check_stream_name(name),
        subjects=[f"{SUBJECT_PREFIX}.>"],
        retention=RetentionPolicy(retention),
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_age=max_age or None,
        duplicate_window=DUPLICATE_WINDOW,
    )


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Creates the stream when it is missing; an existing one is used as it is."""
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        log.info("created JetStream stream %s (%s replicas)", config.name, config.num_replicas)


class Problems:
    """What went wrong talking to NATS: each new cause is logged once, at once, at WARNING
    (refusals: ERROR); repeats at DEBUG. The last one names the cause in the summary."""

    def __init__(self) -> None:
        self.last: str | None = None
        self._said: set[str] = set()

    def report(self, error: BaseException) -> None:
        cause = describe(error)
        self.last = cause
        if cause in self._said:
            log.debug("nats: %s", cause)
            return
        self._said.add(cause)
        log.log(logging.ERROR if refused(error) else logging.WARNING, "nats: %s", cause)

    def recovered(self) -> None:
        if self.last is not None:
            log.info("nats: working again after: %s", self.last)
        self.last = None


#: What the server says when it refuses a client (nats-py raises a plain error for them).
REFUSALS = ("authorization violation", "authentication", "permissions violation")


def refused(error: BaseException) -> bool:
    """The server (or TLS) refused: retrying as is will not help, someone must act."""
    if isinstance(error, (nats.js.errors.APIError, nats.errors.AuthorizationError, ssl.SSLError)):
        return True
    return any(word in str(error).lower() for word in REFUSALS)


def describe(error: BaseException) -> str:
    """One line for a nats-py error (some have an empty str(), some say "nats: " first)."""
    if isinstance(error, nats.js.errors.APIError):
        return f"the server refused: {error.description} (code {error.err_code})"
    text = str(error).strip().removeprefix("nats: ") or type(error).__name__
    if isinstance(error, ConnectionRefusedError):
        return f"server unreachable ({text})"
    return text


class _QuietTlsEof(logging.Filter):
    """asyncio warns at every TLS connection the server closes that nats-py's protocol
    "returns true from eof_received()": noise, once per reconnection attempt."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received()" not in record.getMessage()


_QUIET_TLS_EOF = _QuietTlsEof()


async def connect(access: NatsAccess, name: str, problems: Problems) -> Client:
    """A client of ``access``'s servers that reconnects for ever (the buffer holds the events
    meanwhile); every failure goes to ``problems``."""
    logging.getLogger("asyncio").addFilter(_QUIET_TLS_EOF)  # once: filters are a set

    async def report(error: Exception) -> None:
        problems.report(error)

    client = await nats.connect(
        servers=access.servers,
        name=name,
        connect_timeout=CONNECT_TIMEOUT,
        reconnect_time_wait=RECONNECT_WAIT,
        max_reconnect_attempts=-1,
        error_cb=report,
        **access.connect_options(),
    )
    problems.recovered()
    return client


def without_secret(record: Record, secret: str) -> Record:
    """``record`` (an event of this agent's own process) with ``secret`` masked in its
    command line: what the agent reports about itself never carries its NATS password."""
    argv = record.get("command_line")
    if not isinstance(argv, list) or not any(secret in str(a) for a in argv):
        return record
    masked = [str(a).replace(secret, HIDDEN) for a in argv]
    return {**record, "command_line": masked}


class JetStreamSink(Sink):
    """Publishes records to JetStream stream ``stream`` (created when missing with ``replicas``,
    ``retention`` and ``max_age``), keeping at most ``buffer`` of them while unacknowledged."""

    def __init__(
        self,
        target: str,
        *,
        stream: str = "PROCOBSRV",
        replicas: int = 1,
        retention: str = "limits",
        max_age: float = DEFAULT_STREAM_MAX_AGE,
        buffer: int = 100_000,
        in_flight: int = 512,
        ack_timeout: float = 2.0,
        close_timeout: float = 10.0,
        maker: RecordMaker | None = None,
        nats_access: NatsAccess | None = None,
    ) -> None:
        self.access = nats_access if nats_access is not None else access(target)
        self.target = self.access.shown  # the password hidden
        self._own_pid = os.getpid()
        self.problems = Problems()
        self.config = stream_config(stream, replicas, retention, max_age)
        self.capacity = buffer
        self.in_flight = in_flight
        self.ack_timeout = ack_timeout
        self.close_timeout = close_timeout
        self.maker = maker if maker is not None else RecordMaker()
        self.published = 0  # events acked by the stream (loss records not counted)
        self.duplicates = 0  # acks saying the stream already had it (a retried publish)
        self.overflowed = 0  # events that found the buffer full
        self.unsent = 0  # events still buffered when close() gave up
        self._pending_loss = 0  # overflowed events not yet reported in a loss record
        self._buffer: deque[Message] = deque()
        self._lock = threading.Lock()
        self._sleeping = False
        self._closing = False
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()
        self._thread = FunctionThread(current_platform(), "procobsrv-nats", self._loop.run_forever)
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._run(), self._loop)

    # -- the retrieval thread's side: never blocks on I/O --------------------------------
    def send(self, record: Record) -> None:
        message = self._message(record)
        with self._lock:
            if self._closing:
                return
            if len(self._buffer) >= self.capacity:
                self.overflowed += 1
                self._pending_loss += 1
                return
            if self._pending_loss:  # the gap, where it happened
                self._buffer.append(self._message(self.maker.lost(self._pending_loss, "output")))
                self._pending_loss = 0
            self._buffer.append(message)
            self._wake_up()

    def _message(self, record: Record) -> Message:
        if record.get("pid") == self._own_pid and self.access.password:
            record = without_secret(record, self.access.password)
        kind = str(record["kind"])
        subject = f"{SUBJECT_PREFIX}.{subject_token(str(record['host']))}.{kind}"
        return (subject, str(record["id"]), dumps(record).encode(), kind != "lost")

    def _wake_up(self) -> None:  # with the lock held
        if self._sleeping:
            self._sleeping = False
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- the I/O thread ----------------------------------------------------------------
    async def _run(self) -> None:
        nc = await connect(self.access, f"procobsrv {self.maker.host}", self.problems)
        js = nc.jetstream(publish_async_max_pending=self.in_flight)
        ensured = False
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return  # closing and drained
                if not batch:
                    await self._wake.wait()
                    continue
                try:
                    if not ensured:
                        await ensure_stream(js, self.config)
                        ensured = True
                    await self._publish(js, batch)
                    self.problems.recovered()
                except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
                    self.problems.report(exc)
                    ensured = ensured and not isinstance(exc, nats.js.errors.NoStreamResponseError)
                    await asyncio.sleep(RETRY_PAUSE)
        finally:
            await nc.close()

    def _next_batch(self) -> list[Message] | None:
        """The oldest records (left in the buffer until acked); [] after arming the wake-up
        when there are none; None when closing and nothing is left."""
        with self._lock:
            if not self._buffer:
                if self._closing:
                    return None
                self._sleeping = True
                self._wake.clear()
                return []
            n = min(self.in_flight, len(self._buffer))
            return [self._buffer[i] for i in range(n)]

    async def _publish(self, js: JetStreamContext, batch: list[Message]) -> None:
        futures = []
        for subject, msg_id, payload, _ in batch:
            futures.append(
                await js.publish_async(
                    subject, payload, wait_stall=self.ack_timeout, headers={"Nats-Msg-Id": msg_id}
                )
            )
        await asyncio.wait(futures, timeout=self.ack_timeout)
        acked = 0
        error: BaseException | None = None
        for future in futures:  # the acked prefix leaves the buffer; the rest is sent again
            if not future.done():
                error = error or asyncio.TimeoutError("no ack from the stream")
                break
            error = future.exception()
            if error is not None:
                break
            acked += 1
            if future.result().duplicate:
                self.duplicates += 1
        for future in futures[acked:]:
            future.cancel()
        with self._lock:
            for _ in range(acked):
                if self._buffer.popleft()[3]:
                    self.published += 1
            if self._pending_loss and len(self._buffer) < self.capacity:
                # the gap is said now, not only when a later event comes (maybe never)
                self._buffer.append(self._message(self.maker.lost(self._pending_loss, "output")))
                self._pending_loss = 0
        if error is not None:
            raise error

    async def _cancel(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the main thread -----------------------------------------------------------------
    def close(self) -> None:
        """Sends what is buffered (for up to ``close_timeout`` seconds), then disconnects."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._pending_loss:
                self._buffer.append(self._message(self.maker.lost(self._pending_loss, "output")))
                self._pending_loss = 0
            self._sleeping = False
        self._loop.call_soon_threadsafe(self._wake.set)
        deadline = time.monotonic() + self.close_timeout
        try:
            self._task.result(timeout=max(0.0, deadline - time.monotonic()))
        except Exception as exc:  # timeout or a failure: what is left counts as unsent
            log.debug("nats output stopped: %r", exc)
            cancelling = asyncio.run_coroutine_threadsafe(self._cancel(), self._loop)
            try:
                cancelling.result(timeout=CANCEL_TIMEOUT)
            except Exception as stuck:  # its thread is a daemon: the exit does not wait for it
                log.warning("the NATS client did not stop in %.0f s (%r)", CANCEL_TIMEOUT, stuck)
        with self._lock:
            self.unsent = sum(1 for m in self._buffer if m[3])
            self._buffer.clear()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CANCEL_TIMEOUT)

    def summary(self) -> str:
        text = f"{self.published} events published to {self.target} ({self.config.name})"
        if self.overflowed:
            text += f", {self.overflowed} lost (buffer full while the servers were unreachable)"
        if self.unsent:
            cause = self.problems.last or "servers unreachable"
            text += f", {self.unsent} not sent at exit ({cause})"
        return text

    def stats(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "duplicates": self.duplicates,
            "overflowed": self.overflowed,
            "unsent": self.unsent,
        }
