"""``procobsrv watch``'s outputs when things go wrong: a reader that stops reading, a disk
that fills up, a file that cannot be written, closed standard streams, a planted symlink, a
file of another user, bytes that are not UTF-8. Real processes, real files, real signals."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.availability import require_connector, unavailable
from tests.fakes.mounts import small_tmpfs
from tests.fakes.planted import OTHER_UID, planted_link
from tests.fakes.storm import Storm
from tests.fakes.watch import started

pytestmark = pytest.mark.kernel
TOOL = [sys.executable, "-m", "procobsrv"]
SUMMARY = re.compile(r"procobsrv: (\d+) events \(.*\), (\d+) lost(?:, (\d+) not written \((.*)\))?")
WRITTEN = re.compile(r"procobsrv: (\d+) lines written to ")


def start_watch(*args: str, stdout: Any = subprocess.DEVNULL) -> subprocess.Popen[str]:
    """``procobsrv watch ARGS``, returned once it watches (its first stderr line)."""
    require_connector()
    watch = subprocess.Popen(
        [*TOOL, "watch", *args], stdout=stdout, stderr=subprocess.PIPE, text=True
    )
    started(watch)
    assert watch.stderr is not None
    line = watch.stderr.readline()
    assert "watching" in line, line + watch.stderr.read()
    return watch


def summary(err: str) -> tuple[int, int, int, str]:
    """(events, lost, not written, why) from the summary line."""
    found = SUMMARY.search(err)
    assert found is not None, err
    total, lost, unwritten, why = found.groups()
    return int(total), int(lost), int(unwritten or 0), why or ""


def written(err: str) -> int:
    found = WRITTEN.search(err)
    assert found is not None, err
    return int(found.group(1))


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        unavailable(f"only root can {why}")


def spawn_until_ended(watch: subprocess.Popen[str], timeout: float = 15.0) -> None:
    """Short processes (events to write) until the watch ends by itself."""
    deadline = time.monotonic() + timeout
    while watch.poll() is None and time.monotonic() < deadline:
        subprocess.run(["/bin/true"], check=True)
        time.sleep(0.005)


def drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 1 << 16):
            out += chunk
    return out


def records(data: bytes) -> list[dict[str, Any]]:
    """Every line, parsed: a cut or glued line fails here."""
    assert data == b"" or data.endswith(b"\n"), data[-200:]
    return [json.loads(line) for line in data.splitlines()]


# -- item 4: a reader that stops reading never holds up a stop -----------------------------
@pytest.mark.parametrize("target", ["fifo", "/dev/stdout"])
def test_a_stop_ends_in_time_though_the_output_reader_stopped_reading(
    target: str, tmp_path: Path
) -> None:
    """``--output FIFO`` (or ``/dev/stdout``, a pipe) whose reader stopped reading: SIGTERM
    ends the watch within two seconds; every line is in the pipe or counted as not written."""
    if target == "fifo":
        fifo = tmp_path / "events.fifo"
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # there, but never reads
        watch = start_watch("--output", str(fifo))
    else:
        reader, write_end = os.pipe()
        watch = start_watch("--output", "/dev/stdout", stdout=write_end)
        os.close(write_end)
    try:
        storm = Storm(spawners=2, per_spawner=400)  # 2,400 events: far more than a pipe holds
        storm.wait()
        time.sleep(0.5)
        began = time.monotonic()
        watch.send_signal(signal.SIGTERM)
        watch.wait(timeout=10)
        took = time.monotonic() - began
        assert watch.stderr is not None
        err = watch.stderr.read()
        out = drain(reader)
    finally:
        os.close(reader)
    assert took < 2.0, f"took {took:.2f} s to stop"
    assert watch.returncode == 0 and "Traceback" not in err, err
    total, lost, unwritten, why = summary(err)
    lines = records(out)
    assert lost == 0 and unwritten > 0 and why == "output blocked", err
    assert len(lines) == written(err)
    assert len(lines) + unwritten == total, (len(lines), unwritten, total)


# -- item 5: a failing output is counted, said once, and ends with status 2 ---------------
def test_a_full_filesystem_ends_watch_counted_said_once_and_leaves_whole_lines(
    tmp_path: Path,
) -> None:
    """The file's filesystem fills up: the watch ends with status 2, one message, the count
    of lines not written; the file holds whole lines only, so the next run appends cleanly."""
    with small_tmpfs(tmp_path / "small", "64k") as mount:
        path = mount / "events.jsonl"
        watch = start_watch("--output", str(path))
        spawn_until_ended(watch)
        watch.wait(timeout=10)
        assert watch.stderr is not None
        err = watch.stderr.read()
        assert watch.returncode == 2, err
        assert "Traceback" not in err and "procobsrv: error: " not in err, err
        assert err.count("No space left on device") == 1, err
        assert err.endswith(
            f"procobsrv: writing the output file {path} failed: "
            "[Errno 28] No space left on device\n"
        ), err
        total, lost, unwritten, why = summary(err)
        lines = records(path.read_bytes())
        assert lost == 0 and unwritten > 0 and why == "output failed", err
        assert len(lines) == written(err) > 0
        assert len(lines) + unwritten == total, err
        # Room again: the next run appends after whole lines, never glued to a cut one.
        subprocess.run(["mount", "-o", "remount,size=1m", str(mount)], check=True)
        again = start_watch("--output", str(path), "--match", "room-again", "--duration", "1")
        subprocess.run(["sh", "-c", "sleep 0.1", "room-again"], check=True)
        _, err = again.communicate(timeout=10)
        assert again.returncode == 0, err
        assert len(records(path.read_bytes())) > len(lines)


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/dev/full", "[Errno 28] No space left on device"), ("/proc/version", "[Errno 5]")],
)
def test_an_output_that_cannot_be_written_ends_watch_counted_with_status_2(
    path: str, reason: str
) -> None:
    if path.startswith("/proc"):
        require_root("open /proc/version for writing")
    watch = start_watch("--output", path)
    spawn_until_ended(watch)
    watch.wait(timeout=10)
    assert watch.stderr is not None
    err = watch.stderr.read()
    assert watch.returncode == 2 and "Traceback" not in err, err
    _total, _lost, unwritten, why = summary(err)
    assert unwritten > 0 and why == "output failed", err
    last = err.splitlines()[-1]
    assert last.startswith(f"procobsrv: writing the output file {path} failed: {reason}"), err


# -- Low, output streams --------------------------------------------------------------------
def run_briefly(*args: str, close_fd: int, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``watch ARGS --duration 1.5`` started with ``close_fd`` closed; a few processes run
    while it watches."""
    require_connector()
    watch = subprocess.Popen(
        [*TOOL, "watch", *args, "--duration", "1.5"],
        text=True,
        preexec_fn=lambda: os.close(close_fd),
        **kwargs,
    )
    started(watch)
    time.sleep(0.7)
    for _ in range(3):
        subprocess.run(["/bin/true"], check=True)
    out, err = watch.communicate(timeout=20)
    return subprocess.CompletedProcess(watch.args, watch.returncode, out, err)


def test_with_stderr_closed_stdout_holds_only_the_json_lines() -> None:
    run = run_briefly("--json", close_fd=2, stdout=subprocess.PIPE)
    assert run.returncode == 0
    lines = records(run.stdout.encode())  # no "procobsrv: watching" among them
    assert lines and all("kind" in r for r in lines)


def test_an_output_file_needs_no_stdout(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    run = run_briefly("--output", str(path), close_fd=1, stderr=subprocess.PIPE)
    assert run.returncode == 0, run.stderr
    assert len(records(path.read_bytes())) == written(run.stderr) > 0


# -- Low, files -------------------------------------------------------------------------------
def refused(path: Path) -> str:
    """``watch --output PATH``: refused with one line and status 2; that line."""
    run = subprocess.run(
        [*TOOL, "watch", "--output", str(path), "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert run.returncode == 2, run
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1, run.stderr
    return run.stderr


def test_a_symlink_planted_by_another_user_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    err = refused(planted_link(tmp_path, victim))
    assert "symbolic link" in err and str(OTHER_UID) in err, err
    assert victim.read_text() == "mine\n"


def test_a_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    require_root("give a file to another user")
    theirs = tmp_path / "events.jsonl"
    theirs.write_text("")
    os.chown(theirs, OTHER_UID, OTHER_UID)
    err = refused(theirs)
    assert f"belongs to user {OTHER_UID}" in err, err
    assert theirs.read_text() == ""


# -- Low, bytes that are not UTF-8 -------------------------------------------------------------
ODD_ARGUMENT = b"procobsrv-bytes-\xff\x80\xc3(\xed\xa0\x80"  # invalid UTF-8, incl. a surrogate


@pytest.mark.parametrize("mode", ["--json", "--output"])
def test_arguments_and_paths_that_are_not_utf8_come_back_as_their_bytes(
    mode: str, tmp_path: Path
) -> None:
    """A program at a path that is not UTF-8, with an argument that is not either: the JSON
    line carries each byte as ``\\udcXX``, and ``original_bytes`` gives the exact bytes back."""
    from procobsrv.agent import original_bytes

    program = os.path.join(os.fsencode(tmp_path), b"sh-\xfe\xff")
    shutil.copy(b"/bin/sh", program)
    path = tmp_path / "events.jsonl"
    args = ["--json"] if mode == "--json" else ["--output", str(path)]
    watch = start_watch("--match", "procobsrv-bytes", *args, stdout=subprocess.PIPE)
    child = subprocess.Popen([program, b"-c", b"sleep 0.2", ODD_ARGUMENT])
    child.wait()
    time.sleep(0.3)
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=10)
    assert watch.returncode == 0, err
    data = out.encode() if mode == "--json" else path.read_bytes()
    assert b"\\udcff\\udc80" in data  # the documented escape, as JSON writes it
    mine = [r for r in records(data) if r.get("pid") == child.pid and r["kind"] == "exec"]
    assert mine, data
    assert original_bytes(mine[0]["image"]) == program
    assert original_bytes(mine[0]["command_line"][-1]) == ODD_ARGUMENT
