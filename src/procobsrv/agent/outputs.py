"""Records for a :class:`Sink` (:class:`RecordHandler`: ``watch --output nats://...``), and
how an output file is opened (:func:`open_append`: ``watch --output FILE``, ``collect
--output``/``--dead-letter``) and how a failed write leaves it (:func:`drop_cut_line`).
The lines of a file are written by ``procobsrv.cli.output.Output`` (watch) and
``procobsrv.agent.collect.LineFile`` (collect)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from typing import Any

from ..callback import CallbackHandler
from ..errors import MonitorError
from ..events import QueuedItem
from .records import Record, RecordMaker
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
