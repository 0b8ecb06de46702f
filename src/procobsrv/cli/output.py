"""The console tool's output: lines written by a thread of their own, never blocking a stop.

A reader that stops reading (a pipe nobody drains, a terminal paused with Ctrl+S) makes a
write block forever. If the handler wrote itself, Ctrl+C would wait for that reader; so the
handler only queues lines here (waiting for room while the watch runs: back-pressure into
the monitor's queue, which drops and counts) and one writer thread blocks on the fd.
Once a stop is asked, nothing waits any more: lines with no room are counted, not written,
and :meth:`Output.close` gives the writer a deadline, then counts what is left.

A reader that went away (``| head -3``) is EPIPE: the output is ``broken``, the watch is
told through ``on_broken`` and ends quietly.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

#: Lines queued for the writer before the handler waits (about 1 MB of text lines).
BACKLOG = 10_000
#: Bytes per write: up to PIPE_BUF, a pipe takes a write whole or not at all, so the count
#: of lines not written is exact even when the writer is abandoned in the middle of one.
PIECE = 4096


class Output:
    """Lines to ``stream`` (its fd when it has one), written by a daemon thread."""

    def __init__(self, stream: TextIO | None, on_broken: Callable[[], None]) -> None:
        if stream is None:  # what sys.stdout is when the program started with fd 1 closed
            raise OSError(errno.EBADF, "standard output is closed")
        stream.flush()
        self._write = _writer(stream)
        self._on_broken = on_broken
        self._lines: deque[bytes] = deque()
        self._in_flight = 0  # lines the writer has taken but not finished writing
        self._changed = threading.Condition()
        self._stopping = False  # a stop was asked: never wait for room again
        self._closed = False
        #: The reader went away (EPIPE): nothing more can be written.
        self.broken = False
        #: Why writing failed otherwise (EIO, ENOSPC, ...), else None.
        self.error: OSError | None = None
        #: Lines given to :meth:`put` (or refused by :meth:`reserve`) that were never written.
        self.unwritten = 0
        self._thread = threading.Thread(target=self._run, name="procobsrv-output", daemon=True)

    def start(self) -> None:
        """Start writing; lines put before wait until then (a failed start writes nothing)."""
        self._thread.start()

    def reserve(self) -> bool:
        """Wait for room for one line, unless a stop was asked; False: there is none (the
        line is counted as not written and need not even be rendered)."""
        with self._changed:
            while len(self._lines) >= BACKLOG and not (self._stopping or self._failed):
                self._changed.wait()
            if len(self._lines) < BACKLOG and not self._failed:
                return True
            self.unwritten += 1
            return False

    def put(self, line: str) -> None:
        """Queue one line (after :meth:`reserve` said True, or for a line that must go out)."""
        data = (line + "\n").encode("utf-8", "backslashreplace")
        with self._changed:
            if self._failed or self._closed:
                self.unwritten += 1
                return
            self._lines.append(data)
            if len(self._lines) == 1:
                self._changed.notify_all()

    def stop_waiting(self) -> None:
        """From now on the handler never waits for room: a stop must not wait for a reader."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def close(self, grace: float) -> None:
        """Let the writer finish for at most ``grace`` seconds; count what is left."""
        deadline = time.monotonic() + grace
        with self._changed:
            if self._thread.ident is None:
                self._lines.clear()  # never started: nothing was meant to be written
            self._stopping = self._closed = True
            self._changed.notify_all()
            while (self._lines or self._in_flight) and not self._failed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            self.unwritten += len(self._lines) + self._in_flight
            self._lines.clear()
            self._in_flight = 0

    @property
    def _failed(self) -> bool:
        return self.broken or self.error is not None

    def _run(self) -> None:
        lines, changed = self._lines, self._changed
        while True:
            with changed:
                while not lines and not self._closed:
                    changed.wait()
                if not lines:
                    return
                piece = [lines.popleft()]
                size = len(piece[0])
                while lines and size + len(lines[0]) <= PIECE:
                    size += len(lines[0])
                    piece.append(lines.popleft())
                self._in_flight = len(piece)
                changed.notify_all()  # room for the handler
            try:
                self._write(b"".join(piece))
            except OSError as exc:
                self._fail(exc)
                return
            with changed:
                if self._in_flight:  # else close() gave up on this piece and counted it
                    self._in_flight = 0
                    changed.notify_all()

    def _fail(self, exc: OSError) -> None:
        with self._changed:
            if isinstance(exc, BrokenPipeError):
                self.broken = True
            else:
                self.error = exc
            self.unwritten += len(self._lines) + self._in_flight
            self._lines.clear()
            self._in_flight = 0
            self._changed.notify_all()
        self._on_broken()


def _writer(stream: TextIO) -> Callable[[bytes], None]:
    """Raw writes to the stream's fd, bypassing its buffer: a thread blocked inside a
    buffered stream holds its lock, and the interpreter's exit would wait for that lock."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture)

        def write_text(data: bytes) -> None:
            stream.write(data.decode("utf-8"))
            stream.flush()

        return write_text

    def write_fd(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    return write_fd
