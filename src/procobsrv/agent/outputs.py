"""Where records go: a text stream (``watch --json``), an appended file, or NATS JetStream
(``--output FILE`` / ``--output nats://...``), behind one small :class:`Sink` interface."""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable
from typing import Any, TextIO

from ..callback import CallbackHandler
from ..errors import MonitorError
from ..events import QueuedItem
from .nats_extra import needs_nats
from .records import Record, RecordMaker, dumps
from .sink import Sink

log = logging.getLogger(__name__)


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
    """JSON lines appended to ``path`` (opened by :func:`open_append`).

    Each line goes to the kernel in one ``write()`` of the whole line, with no buffer in this
    process: a crash of the agent loses at most the line being written, and other appenders
    cannot interleave inside a line. (No fsync: a crash of the *machine* loses what the page
    cache had not written yet.) A write that fails (a full disk, EIO) raises
    :class:`OutputError` and leaves no part of the line in the file. :meth:`reopen` (SIGHUP)
    opens the path anew, so that logrotate can move the file away and then signal: the next
    line goes to a new file.

    ``send`` writes on the caller's thread: on a FIFO nobody reads it blocks (``watch
    --output`` writes from a thread of its own, ``procobsrv.cli.output.Output``).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()  # reopen (main thread) vs send (retrieval thread)
        self._fd = open_append(self.path)
        self.lines = 0

    def send(self, record: Record) -> None:
        data = (dumps(record) + "\n").encode()
        with self._lock:
            written = 0
            try:
                while written < len(data):  # a regular file takes it whole, but for an error
                    written += os.write(self._fd, data[written:])
            except OSError as exc:
                drop_cut_line(self._fd, data, written)
                raise OutputError(f"writing {self.path} failed: {exc.strerror}") from exc
            self.lines += 1

    def reopen(self) -> None:
        fd = open_append(self.path)
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


class OutputError(MonitorError):
    """Writing an output failed (a full disk, an I/O error): what was lost, and why."""


#: Permissions of an output file the agent creates: the events are the owner's to read.
FILE_MODE = 0o640


def open_append(path: str) -> int:
    """A file descriptor appending to ``path`` (created ``FILE_MODE`` when missing), for
    ``--output FILE``: refused with a :class:`MonitorError` that says why when

    - ``path`` is a symbolic link that neither this user nor root owns: another user could
      have planted it to make the agent append to a file of theirs or of this user's (a link
      of this user's or of root's, like ``/dev/stdout``, is followed);
    - the file is a regular file this user does not own (the events are not theirs to read,
      the file is not this user's to change).

    A regular file whose last line was cut (a crash, a full disk) gets a newline first, so
    that the cut line is never glued to the next one.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _CLOEXEC
    try:
        try:
            fd = os.open(path, flags | _NOFOLLOW, FILE_MODE)
        except OSError:  # ELOOP (a link), or EACCES (the kernel's own protected_symlinks)
            link = _link_status(path) if _NOFOLLOW else None  # (Windows: no such check)
            if link is None:
                raise
            if link.st_uid not in (os.geteuid(), 0):
                raise MonitorError(
                    f"refusing the output file {path}: it is a symbolic link owned by user "
                    f"{link.st_uid}, not by this user or root (give the real path)"
                ) from None
            fd = os.open(path, flags, FILE_MODE)
    except OSError as exc:
        raise MonitorError(
            f"cannot open the output file {path}: {exc.strerror}; check that its "
            "directory exists and is writable by this user"
        ) from exc
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            if hasattr(os, "geteuid") and st.st_uid != os.geteuid():  # Windows: no owner here
                raise MonitorError(
                    f"refusing the output file {path}: it belongs to user {st.st_uid}, not to "
                    "this user (remove it or give another path)"
                )
            _end_a_cut_line(fd, path, st)
    except BaseException:
        os.close(fd)
        raise
    return fd


# Not on Windows (where the handles are not inherited anyway, and there are no such links
# to plant or FIFOs to block on).
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO put there meanwhile must not block a check


def _link_status(path: str) -> os.stat_result | None:
    """``lstat(path)`` when it is a symbolic link, else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISLNK(st.st_mode) else None


def _end_a_cut_line(fd: int, path: str, st: os.stat_result) -> None:
    if st.st_size == 0:
        return
    try:  # read through a second descriptor: the first one only writes
        reader = os.open(path, os.O_RDONLY | _CLOEXEC | _NONBLOCK)
    except OSError:
        return  # not readable by this user: nothing to check with
    try:
        same = os.fstat(reader)
        if (same.st_dev, same.st_ino) != (st.st_dev, st.st_ino):
            return
        os.lseek(reader, st.st_size - 1, os.SEEK_SET)
        last = os.read(reader, 1)
    finally:
        os.close(reader)
    if last not in (b"\n", b""):
        log.warning("%s ended in the middle of a line: ending that line first", path)
        try:
            os.write(fd, b"\n")
        except OSError as exc:
            raise MonitorError(f"cannot write to the output file {path}: {exc.strerror}") from exc


def drop_cut_line(fd: int, data: bytes, written: int) -> None:
    """After a write of ``data`` (whole lines) to ``fd`` stopped after ``written`` bytes: take
    the part of a line it left at the end of the file back out, if nobody appended since, else
    end it with a newline when possible, so that no line is glued to the next one."""
    cut = written - (data.rfind(b"\n", 0, written) + 1)
    if cut == 0:
        return
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return  # a pipe or a device: nothing can be taken back, nothing is appended after
        end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: where this write ended
        if st.st_size == end:
            os.ftruncate(fd, end - cut)
        else:
            os.write(fd, b"\n")
    except OSError as exc:
        log.warning("could not remove a cut line from the output: %s", exc.strerror)


def open_output(target: str, **nats_options: Any) -> Sink:
    """The sink for ``--output TARGET``: ``nats://HOST:PORT[,HOST:PORT...]`` publishes to NATS
    JetStream (needs the ``nats`` extra), anything else is a file path."""
    if target.startswith("nats://"):
        with needs_nats("--output nats://"):
            from .jetstream import JetStreamSink

        return JetStreamSink(target, **nats_options)
    return FileSink(target)
