"""The console tool's output: lines written by a thread of their own, never blocking a stop.

A reader that stops reading (a pipe or FIFO nobody drains, a terminal paused with Ctrl+S)
makes a write block forever. If the handler wrote itself, Ctrl+C would wait for that reader;
so the handler only queues events (and a few lines) here, waiting for room while the watch
runs (back-pressure into the monitor's queue, which drops and counts), and one writer thread
turns all it finds queued into lines (:attr:`Output.render`) and blocks on the fd. Rendering
a batch in a row there costs less CPU than one line at a time on the handler's thread.
Once a stop is asked, nothing waits any more: lines with no room are counted, not written,
and :meth:`Output.close` gives the writer a deadline, then counts what is left.

The count of lines not written is exact: a pipe takes a write of at most PIPE_BUF bytes whole
or not at all, so the writer writes whole lines in pieces of that size to anything that is
not a regular file (where one write takes a whole batch); a write that fails part-way counts
the lines it completed, and a regular file gets the cut line taken back out. (The one piece
the writer may still be blocked on when :meth:`Output.close` gives up is counted as not
written: should the reader take it in the moment before the process exits, it is both.)

A reader that went away (``| head -3``) is EPIPE: the output is ``broken``, the watch is
told through ``on_broken`` and ends quietly. Any other failure (a full disk, EIO) is kept in
``error``, the watch is told the same way, and every line from then on is counted.

Under a storm the writer wakes about once per :data:`LINGER` seconds, not once per batch the
handler gets (each wake-up of a Python thread costs tens of microseconds of CPU): when lines
come again less than :data:`DENSE_GAP` after its last write, it waits up to LINGER for more
lines to join the same write. A line that comes after a quiet moment is written at once; no
line waits more than LINGER for the writer.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from ..agent.outputs import drop_cut_line, open_append
from ..events import QueuedItem
from ..host import current_platform
from ..threads import FunctionThread

log = logging.getLogger(__name__)

#: Bytes queued for the writer before the handler waits: lines by their length, events by an
#: estimate of theirs (:data:`EVENT_BYTES` + the size of the argv); about 6,000 JSON lines.
BACKLOG = 4 << 20
#: An event's line, without its argv, for :data:`BACKLOG` (a JSON line is about 650 bytes).
EVENT_BYTES = 1024
#: Bytes per write to a pipe, FIFO, terminal or device: up to PIPE_BUF, a pipe takes a write
#: whole or not at all, so the count of lines not written is exact even when the writer is
#: abandoned in the middle of one (a single longer line is written alone).
PIECE = 4096
#: Bytes per write to a regular file, at most (a file takes any write whole, but for errors).
FILE_PIECE = 1 << 20
#: The longest a line waits for the writer to join more lines to its write, in seconds; on
#: top of the monitor's HOLD_S: a `watch` line is held HOLD_S + LINGER (9 ms) at most.
LINGER = 0.005
#: The writer lingers only when lines come again this soon after its last write (seconds).
DENSE_GAP = 0.002


class Output:
    """Lines to a file descriptor (``stream``'s, or an ``--output`` file's), written by a
    daemon thread. The handler's side (:meth:`reserve`, :meth:`put`) takes no lock while
    there is room and the writer is busy: it appends to a deque and wakes the writer only
    when the writer sleeps for want of lines."""

    def __init__(
        self,
        stream: TextIO | None,
        on_broken: Callable[[], None],
        *,
        fd: int | None = None,
        path: str | None = None,
    ) -> None:
        if fd is None:
            if stream is None:  # what sys.stdout is when the program started with fd 1 closed
                raise OSError(errno.EBADF, "standard output is closed")
            stream.flush()
            fd = _fileno(stream)
        self._stream = stream  # only written to when it has no fd (a test's capture)
        self._fd = fd
        #: The file ``--output`` names (reopened by :meth:`reopen`), else None.
        self.path = path
        self._piece = _piece_size(fd)
        self._reopened: int | None = None  # a new fd for the writer to switch to
        self._on_broken = on_broken
        self._lines: deque[str | QueuedItem] = deque()  # lines, and events to render
        self._changed = threading.Condition(threading.Lock())
        # Counters, each written by one thread only: lines the handler queued (put) or
        # refused, characters queued and taken, lines written (the writer, until abandoned).
        self._put = self._refused = self._written = 0
        self._put_bytes = self._taken_bytes = 0
        #: How an event given to :meth:`put_event` becomes its line, on the writer's thread.
        self.render: Callable[[QueuedItem], str] = repr
        self._accepting = True  # until closed or failed: put() queues
        self._stopping = False  # a stop was asked: never wait for room again
        self._closed = False
        self._abandoned = False  # close() stopped counting what the writer does
        self._idle = False  # the writer waits for lines: put() must wake it
        self._waiting_for_room = False  # the handler waits: the writer must wake it
        #: The reader went away (EPIPE): nothing more can be written.
        self.broken = False
        #: Why writing failed otherwise (EIO, ENOSPC, ...), else None.
        self.error: OSError | None = None
        self._thread = FunctionThread(current_platform(), "procobsrv-output", self._run)

    @classmethod
    def to_file(cls, path: str, on_broken: Callable[[], None]) -> Output:
        """Lines appended to ``path`` (``--output FILE``), opened by
        :func:`procobsrv.agent.outputs.open_append` (MonitorError when refused)."""
        return cls(None, on_broken, fd=open_append(path), path=path)

    @property
    def written(self) -> int:
        """Lines written so far."""
        return self._written

    @property
    def unwritten(self) -> int:
        """Lines given to :meth:`put` (or refused by :meth:`reserve`) that were not written."""
        return self._refused + self._put - self._written

    def start(self) -> None:
        """Start writing; lines put before wait until then (a failed start writes nothing)."""
        self._thread.start()

    def reserve(self) -> bool:
        """Wait for room for one line, unless a stop was asked; False: there is none (the
        line is counted as not written and need not even be rendered)."""
        if self._accepting and self._put_bytes - self._taken_bytes < BACKLOG:
            return True
        with self._changed:
            self._waiting_for_room = True  # before looking: the writer reads it without a lock
            while self._full() and self._accepting and not self._stopping:
                self._changed.wait()
            self._waiting_for_room = False
            if self._accepting and not self._full():
                return True
            self._refused += 1
            return False

    def put_event(self, item: QueuedItem) -> None:
        """Queue an event, as :meth:`reserve` and :meth:`put` would its line: the writer
        makes the line (:attr:`render`), many in a row, which costs less than one at a time
        on the handler's thread between two other events."""
        if self._accepting and self._put_bytes - self._taken_bytes < BACKLOG:
            self._lines.append(item)
            self._put += 1
            self._put_bytes += EVENT_BYTES + (item.command_line_size or 0)
            if self._idle:
                with self._changed:
                    self._changed.notify()
        elif self.reserve():  # once stopping with no room: counted, never rendered
            self.put_event(item)

    def put(self, line: str) -> None:
        """Queue one line (after :meth:`reserve` said True, or for a line that must go out)."""
        if not self._accepting:
            self._refused += 1
            return
        self._lines.append(line)
        self._put += 1
        self._put_bytes += len(line)
        if self._idle:
            with self._changed:
                self._changed.notify()

    def stop_waiting(self) -> None:
        """From now on the handler never waits for room: a stop must not wait for a reader."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def reopen(self) -> None:
        """Open the ``--output`` path anew (SIGHUP, after logrotate moved the file); the writer
        switches to it before its next write. MonitorError when it cannot be opened (the old
        file is kept)."""
        if self.path is None:
            return
        fd = open_append(self.path)
        with self._changed:
            previous, self._reopened = self._reopened, fd
        if previous is not None:  # two SIGHUPs before the writer switched
            os.close(previous)

    def close(self, grace: float) -> None:
        """Let the writer finish for at most ``grace`` seconds; count what is left."""
        with self._changed:
            self._stopping = self._closed = True
            self._accepting = False
            self._changed.notify_all()
        if not self._thread.started:
            self._put = self._written  # never started: nothing was meant to be written
        else:
            self._thread.join(grace)
        with self._changed:
            self._abandoned = True  # from now on nothing the writer does counts
            reopened, self._reopened = self._reopened, None
        for fd in (reopened, None if self._thread.is_alive() else self._fd):
            if fd is not None and self.path is not None:  # a file of ours, not stdout
                os.close(fd)

    def _full(self) -> bool:
        return self._put_bytes - self._taken_bytes >= BACKLOG

    def _run(self) -> None:
        lines, changed = self._lines, self._changed
        monotonic = time.monotonic
        wrote = -DENSE_GAP  # when the last write ended
        busy = False  # lines keep coming: each batch gathers for LINGER, nobody wakes us
        while True:
            with changed:
                if not busy:
                    self._idle = True  # before looking: put() reads it without a lock
                    while not lines and not self._closed:
                        changed.wait()
                    self._idle = False
                    busy = monotonic() - wrote < DENSE_GAP
                if busy and not self._closed:
                    changed.wait(LINGER)  # more lines join this write; close() cuts it short
                if not lines:
                    if self._closed:
                        return
                    busy = False  # nothing came for LINGER: the next line goes out at once
                    continue
            take = lines.popleft
            batch = self._render([take() for _ in range(len(lines))])  # all there is
            if self._waiting_for_room:
                with changed:
                    changed.notify_all()
            batch.append("")  # the last line's newline
            if not self._write("\n".join(batch).encode("utf-8", "backslashreplace")):
                return
            wrote = monotonic()

    def _render(self, taken: list[str | QueuedItem]) -> list[str]:
        """The lines of what was taken from the queue (events rendered), and its bytes
        counted as taken. An event that cannot be rendered is logged and left out (it
        counts as not written)."""
        render = self.render
        size = 0
        try:
            lines = [x if x.__class__ is str else render(x) for x in taken]  # type: ignore[arg-type]
        except Exception:  # one bad event must not end the output: find it
            lines = []
            for x in taken:
                try:
                    lines.append(x if isinstance(x, str) else render(x))
                except Exception:
                    log.exception("an event could not be written as a line: %r", x)
        for x in taken:
            size += len(x) if isinstance(x, str) else EVENT_BYTES + (x.command_line_size or 0)
        self._taken_bytes += size
        return lines

    def _write(self, data: bytes) -> bool:
        """Write whole lines; False when writing failed or the writer was abandoned."""
        with self._changed:
            if self._reopened is not None:
                os.close(self._fd)
                self._fd, self._reopened = self._reopened, None
                self._piece = _piece_size(self._fd)
        if self._stream is not None and self._fd < 0:
            return self._write_text(data)
        fd, piece, view = self._fd, self._piece, memoryview(data)
        start = done = 0
        try:
            while done < len(data):
                start, end = done, len(data)
                if end - start > piece:  # up to ``piece`` bytes of whole lines (or one line)
                    end = data.rfind(b"\n", start, start + piece) + 1 or data.find(b"\n", start) + 1
                while done < end:
                    done += os.write(fd, view[done:end])
                if not self._count(data.count(b"\n", start, end)):
                    return False
        except OSError as exc:
            self._fail(exc, fd, data, start, done)
            return False
        return True

    def _count(self, lines: int) -> bool:
        with self._changed:
            if self._abandoned:
                return False
            self._written += lines
            return True

    def _write_text(self, data: bytes) -> bool:
        assert self._stream is not None
        try:
            self._stream.write(data.decode("utf-8"))
            self._stream.flush()
        except OSError as exc:
            self._fail(exc, -1, data, 0, 0)
            return False
        return self._count(data.count(b"\n"))

    def _fail(self, exc: OSError, fd: int, data: bytes, start: int, done: int) -> None:
        """Writing ``data[start:]`` failed after ``done`` bytes: count the whole lines that
        went out, take a cut one back out, stop accepting lines."""
        if fd >= 0:
            drop_cut_line(fd, data, done)
        with self._changed:
            if self._abandoned:
                return
            self._written += data.count(b"\n", start, done)
            if isinstance(exc, BrokenPipeError):
                self.broken = True
            else:
                self.error = exc
            self._accepting = False
            self._lines.clear()  # counted: put - written
            self._changed.notify_all()
        self._on_broken()


def _fileno(stream: TextIO) -> int:
    """The stream's fd, to write to it bypassing its buffer (a thread blocked inside a
    buffered stream holds its lock, and the interpreter's exit would wait for that lock);
    -1 when it has none (a test's capture)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return -1


def _piece_size(fd: int) -> int:
    try:
        regular = fd >= 0 and stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = False
    return FILE_PIECE if regular else PIECE
