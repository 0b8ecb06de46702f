"""Where records go: a text stream (``watch --json``), an appended file, or NATS JetStream
(``--output FILE`` / ``--output nats://...``), behind one small :class:`Sink` interface."""

from __future__ import annotations

import abc
import errno
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TextIO

from ..callback import CallbackHandler
from ..errors import MonitorError
from ..events import QueuedItem
from .nats_extra import needs_nats
from .records import Record, RecordMaker, dumps

log = logging.getLogger(__name__)

_SECONDS_PER_DAY = 86400.0
#: Age after which a JetStream stream the agent creates drops events (0: never).
DEFAULT_STREAM_MAX_AGE = 7 * _SECONDS_PER_DAY


class Sink(abc.ABC):
    """Takes records, one at a time, from the retrieval thread. ``send`` must not block for
    long: the monitor's queue is behind it."""

    @abc.abstractmethod
    def send(self, record: Record) -> None:
        """Write or queue one record."""

    def reopen(self) -> None:  # noqa: B027 (optional)
        """Called on SIGHUP (log rotation): a file sink opens its path anew."""

    def close(self) -> None:  # noqa: B027 (optional)
        """Deliver what is pending, then release the resources."""

    def summary(self) -> str | None:
        """One line for the watch's summary, or None."""
        return None


class RecordHandler(CallbackHandler):
    """The handler an output is: each event and each loss becomes a record for ``sink``
    (``mapping``: in another format, e.g. ``agent.formats.to_ecs``)."""

    def __init__(
        self,
        sink: Sink,
        maker: RecordMaker | None = None,
        mapping: Callable[[Record], Record] | None = None,
    ) -> None:
        self.sink = sink
        self.maker = maker if maker is not None else RecordMaker()
        self.mapping = mapping

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        record = self.maker.event(item)
        self.sink.send(record if self.mapping is None else self.mapping(record))

    def on_events_lost(self, count: int, param: Any) -> None:
        record = self.maker.lost(count)
        self.sink.send(record if self.mapping is None else self.mapping(record))


class StreamSink(Sink):
    """JSON lines to a text stream, flushed per line so that a pipe sees each at once."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def send(self, record: Record) -> None:
        self.stream.write(dumps(record) + "\n")
        self.stream.flush()


class FileSink(Sink):
    """JSON lines appended to ``path`` (``O_APPEND``, created 0640 when missing).

    Each line goes to the kernel in one ``write()`` of the whole line, with no buffer in this
    process: a crash of the agent loses at most the line being written, and other appenders
    cannot interleave inside a line. (No fsync: a crash of the *machine* loses what the page
    cache had not written yet.) :meth:`reopen` (SIGHUP) opens the path anew, so that
    logrotate can move the file away and then signal: the next line goes to a new file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()  # reopen (main thread) vs send (retrieval thread)
        self._fd = self._open()
        self.lines = 0

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise MonitorError(
                f"cannot open the output file {self.path}: {exc.strerror}; check that its "
                "directory exists and is writable by this user"
            ) from exc

    def send(self, record: Record) -> None:
        data = (dumps(record) + "\n").encode()
        with self._lock:
            while data:  # a regular file takes it whole; loop only for a short write (ENOSPC)
                try:
                    written = os.write(self._fd, data)
                except InterruptedError:
                    continue
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        log.error("output file %s is full: a line was lost", self.path)
                        return
                    raise
                data = data[written:]
            self.lines += 1

    def reopen(self) -> None:
        fd = self._open()
        with self._lock:
            old, self._fd = self._fd, fd
        os.close(old)
        log.info("reopened %s", self.path)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def summary(self) -> str:
        return f"{self.lines} lines written to {self.path}"


def open_output(target: str, **nats_options: Any) -> Sink:
    """The sink for ``--output TARGET``: ``nats://HOST:PORT[,HOST:PORT...]`` publishes to NATS
    JetStream (needs the ``nats`` extra), anything else is a file path."""
    if target.startswith("nats://"):
        with needs_nats("--output nats://"):
            from .jetstream import JetStreamSink

        return JetStreamSink(target, **nats_options)
    return FileSink(target)
