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
from pathlib import Path
from typing import TextIO

import pytest

from procobsrv import EventKind, QueuedItem
from procobsrv.cli.output import Output
from tests.fakes.mounts import small_tmpfs

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


def test_a_full_file_counts_exactly_and_keeps_only_whole_lines(tmp_path: Path) -> None:
    """Lines of uneven sizes into a 16 KiB filesystem: the write that fills it is cut in the
    middle of a line; that part is taken back out, and written + not written = put."""
    with small_tmpfs(tmp_path / "small", "16k") as mount:
        path = mount / "out.jsonl"
        told = threading.Event()
        output = Output.to_file(str(path), on_broken=told.set)
        output.start()
        sizes = [37 + (n * 7919) % 300 for n in range(400)]  # about 75 KiB in all
        for n, size in enumerate(sizes):
            if output.reserve():
                output.put(f"{n:05d}" + "y" * size)
        assert told.wait(GRACE_S)
        output.close(GRACE_S)
        data = path.read_bytes()
    assert output.error is not None and output.error.errno == errno.ENOSPC
    assert not output.broken
    assert data.endswith(b"\n")
    lines = data.decode().splitlines()
    assert lines == [f"{n:05d}" + "y" * size for n, size in enumerate(sizes[: len(lines)])]
    assert len(lines) == output.written > 0
    assert output.written + output.unwritten == len(sizes)


def test_reopen_makes_the_next_write_go_to_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    output = Output.to_file(str(path), on_broken=lambda: None)
    output.start()
    output.put("first")
    deadline = time.monotonic() + GRACE_S
    while output.written < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    path.rename(tmp_path / "out.jsonl.1")  # what logrotate does, then SIGHUP
    output.reopen()
    output.put("second")
    output.close(GRACE_S)
    assert (tmp_path / "out.jsonl.1").read_text() == "first\n"
    assert path.read_text() == "second\n"
    assert (output.written, output.unwritten) == (2, 0)


def test_a_line_after_a_quiet_moment_is_written_without_waiting_for_more() -> None:
    """No batching delay for a lone line: it reaches the reader while nothing else comes."""
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as stream:
        output = Output(stream, on_broken=lambda: None)
        output.start()
        try:
            for n in range(3):
                time.sleep(0.05)  # quiet: longer than any lingering
                output.put(f"line {n}")
                assert os.read(read_end, 100) == f"line {n}\n".encode()
        finally:
            output.close(GRACE_S)
            os.close(read_end)


def test_an_event_that_cannot_be_rendered_is_counted_and_the_others_are_written(
    pipe: tuple[int, TextIO], caplog: pytest.LogCaptureFixture
) -> None:
    read_end, stream = pipe
    output = Output(stream, on_broken=lambda: None)

    def render(item: QueuedItem) -> str:
        if item.process_id == 2:
            raise ValueError("no line for this one")
        return f"pid {item.process_id}"

    output.render = render
    output.start()
    for pid in (1, 2, 3):
        output.put_event(QueuedItem(EventKind.EXEC, pid, 0, 1.0))
    output.close(GRACE_S)
    stream.close()
    assert read_all(read_end).decode().splitlines() == ["pid 1", "pid 3"]
    assert (output.written, output.unwritten) == (2, 1)
    assert "could not be written as a line" in caplog.text
