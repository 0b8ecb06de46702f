"""cli/output.py: lines written by a thread of their own; a stop never waits for the reader."""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import termios
import threading
import time
from collections.abc import Iterator
from typing import TextIO

import pytest

from procobsrv.cli.output import Output

#: More than the writer needs on a loaded machine; a hang fails the test instead.
GRACE_S = 5.0
#: A stop with a blocked reader gives the writer this long (what `watch` gives it: 0.3 s).
SHORT_GRACE_S = 0.3
#: Lines of a fixed size, so that bytes in a pipe say how many lines they are.
LINE = "x" * 99  # 100 bytes with its newline
#: Far more than a pipe holds (64 KiB on Linux): the writer blocks.
MANY = 2_000


@pytest.fixture
def pipe() -> Iterator[tuple[int, TextIO]]:
    """A pipe's read end and its write end as a text stream (what stdout would be)."""
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    try:
        yield read_end, stream
    finally:
        for close in (stream.close, lambda: os.close(read_end)):
            try:
                close()
            except OSError:
                pass


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_closed_stdout_is_refused_at_once() -> None:
    with pytest.raises(OSError) as refused:
        Output(None, on_broken=lambda: None)
    assert refused.value.errno == errno.EBADF


def test_lines_are_written_in_order_and_close_waits_for_them(pipe: tuple[int, TextIO]) -> None:
    read_end, stream = pipe
    output = Output(stream, on_broken=lambda: None)
    output.put("before start")  # waits for start()
    output.start()
    for n in range(3):
        assert output.reserve()
        output.put(f"line {n} \udcff")  # a byte that is not UTF-8 stays visible
    output.close(GRACE_S)
    stream.close()
    assert read_all(read_end).decode().splitlines() == [
        "before start",
        *(f"line {n} \\udcff" for n in range(3)),
    ]
    assert (output.unwritten, output.broken, output.error) == (0, False, None)


def test_a_reader_that_went_away_makes_it_broken_and_says_so(pipe: tuple[int, TextIO]) -> None:
    read_end, stream = pipe
    told = threading.Event()
    output = Output(stream, on_broken=told.set)
    os.close(read_end)
    output.start()
    output.put(LINE)
    assert told.wait(GRACE_S) and output.broken and output.error is None
    assert not output.reserve()  # nothing can be written any more: counted at once
    output.put(LINE)
    output.close(GRACE_S)
    assert output.unwritten == 3


def test_a_stop_with_a_blocked_reader_ends_in_time_and_counts_exactly(
    pipe: tuple[int, TextIO],
) -> None:
    read_end, stream = pipe
    output = Output(stream, on_broken=lambda: None)
    output.start()
    for _ in range(MANY):
        assert output.reserve()
        output.put(LINE)
    output.stop_waiting()
    began = time.monotonic()
    output.close(SHORT_GRACE_S)
    assert time.monotonic() - began < SHORT_GRACE_S + 1.0
    queued = bytearray(4)
    fcntl.ioctl(read_end, termios.FIONREAD, queued)
    in_the_pipe = int.from_bytes(queued, sys.byteorder) // (len(LINE) + 1)
    assert in_the_pipe > 0 and output.unwritten > 0
    assert in_the_pipe + output.unwritten == MANY
