"""``procobsrv watch`` as a shell user meets it: real pipes, real signals, real processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import watch as watch_tool
from tests.fakes.availability import require_connector
from tests.fakes.gauges import wait_until
from tests.fakes.storm import Storm
from tests.fakes.watch import started

pytestmark = pytest.mark.kernel
TOOL = [sys.executable, "-m", "procobsrv"]


def run_tool(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TOOL, *args], capture_output=True, text=True, timeout=timeout)


def one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    """A refused command: status 2 and exactly one line on stderr, no traceback."""
    assert run.returncode == 2, run
    assert "Traceback" not in run.stderr, run.stderr
    assert run.stderr.endswith("\n") and run.stderr.count("\n") == 1, run.stderr
    return run.stderr


# -- item 4: arguments ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["watch", "--match", "("], "--match"),
        (["watch", "--duration", "-1"], "--duration"),
        (["watch", "--duration", "0"], "--duration"),
        (["watch", "--duration", "nan"], "--duration"),
        (["watch", "--duration", "inf"], "--duration"),
        (["watch", "--duration", "soon"], "--duration"),
        (["watch", "--duration", "1e10"], "--duration"),  # longer than a wait can take
        (["collect", "nats://127.0.0.1:4222", "--duration", "1e10"], "--duration"),
        (["collect", "nats://127.0.0.1:4222", "--match", "("], "--match"),
        (["watch", "--output", "nats://127.0.0.1:4222", "--nats-buffer", "-5"], "--nats-buffer"),
        (["watch", "--output", "nats://127.0.0.1:4222", "--nats-replicas", "0"], "replicas"),
        (["watch", "--output", "nats://127.0.0.1:99999"], "99999"),
        (["watch", "--output", "nats://127.0.0.1:0"], "port"),
        (["collect", "nats://127.0.0.1:99999"], "99999"),
        (["collect", "nats://127.0.0.1:4222", "--nats-stream", "A.B"], "stream name"),
        (["collect", "nats://127.0.0.1:4222", "--nats-max-age", "-1"], "--nats-max-age"),
        (["collect", "nats://127.0.0.1:4222", "--nats-tls-ca", "/nonexistent"], "TLS files"),
        (["watch", "--output", "nats://127.0.0.1:4222", "--nats-nkey", "/none"], "--nats-nkey"),
        (["collect", "nats://127.0.0.1:4222", "--nats-password-file", "/none"], "password file"),
        (["watch", "--kind", "start"], "created"),  # the error names what is accepted
        (["watch", "--bogus"], "--bogus"),
        ([], "COMMAND"),
        (["nonsense"], "nonsense"),
    ],
)
def test_bad_arguments_get_one_line_and_status_2(args: list[str], said: str) -> None:
    err = one_line_error(run_tool(*args))
    assert said in err and err.startswith("procobsrv"), err


@pytest.mark.usefixtures("connector")
def test_kind_names_accepted_are_the_names_shown() -> None:
    """--kind takes created/exec/exited, the text output's EVENT column shows the same."""
    watch = subprocess.Popen(
        [*TOOL, "watch", "--kind", "created", "--kind", "exited"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watch.stderr is not None and "watching" in watch.stderr.readline()
    child = subprocess.Popen(["/bin/sleep", "0.1"])
    child.wait()
    time.sleep(0.3)
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=5)
    header, *lines = out.splitlines()
    assert header.split()[1] == "EVENT"
    kinds = {line.split()[1] for line in lines}
    assert kinds <= {"created", "exited"}, kinds
    mine = [line.split()[1] for line in lines if line.split()[2] == str(child.pid)]
    assert mine == ["created", "exited"], out
    assert watch.returncode == 0, err


# -- item 1: the reader goes away (EPIPE) --------------------------------------------------
def start_watch(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
    require_connector()
    watch = subprocess.Popen([*TOOL, "watch", *args], stdout=stdout, stderr=subprocess.PIPE)
    started(watch)
    assert watch.stderr is not None and b"watching" in watch.stderr.readline()
    return watch


def spawn_until(done: Callable[[], bool], timeout: float) -> None:
    """Start short processes (events for the watch to write) until ``done()`` or timeout."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        subprocess.run(["/bin/true"], check=True)
        time.sleep(0.01)


@pytest.mark.parametrize("mode", [[], ["--json"]])
def test_watch_ends_at_once_and_quietly_when_its_reader_goes_away(mode: list[str]) -> None:
    """``watch | head -3``: once the reader has closed the pipe, the next write fails with
    EPIPE and watch ends: no traceback, no summary, status 141 (128 + SIGPIPE, like cat)."""
    watch = start_watch(*mode)
    assert watch.stdout is not None
    spawn_until(lambda: False, 0.2)
    lines = [watch.stdout.readline() for _ in range(3)]
    assert all(line.endswith(b"\n") for line in lines), lines
    watch.stdout.close()  # what head does after its third line
    closed = time.monotonic()
    spawn_until(lambda: watch.poll() is not None, 10)
    assert watch.wait(timeout=5) == 141
    assert time.monotonic() - closed < 2.0
    assert watch.stderr is not None
    assert watch.stderr.read() == b""  # quietly: not a line more


@pytest.mark.parametrize("reader", ["head -n 3", "grep -m 1 exec"])
@pytest.mark.usefixtures("connector")
def test_a_shell_pipeline_into_a_reader_that_stops_early_ends(reader: str) -> None:
    shell = subprocess.Popen(
        ["sh", "-c", f'"$@" | {reader}', "sh", *TOOL, "watch", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    started(shell)
    spawn_until(lambda: shell.poll() is not None, 15)
    out, err = shell.communicate(timeout=5)
    assert shell.returncode == 0, err
    assert 1 <= len(out.splitlines()) <= 3 and b"Traceback" not in err, err
    assert err.count(b"\n") == 1, err  # "watching; Ctrl+C to stop", nothing more


def test_an_output_that_fails_otherwise_ends_watch_with_the_reason() -> None:
    """/dev/full: every write fails with ENOSPC. The watch ends, summary first, status 2."""
    with open("/dev/full", "wb") as full:
        watch = start_watch(stdout=full)
    spawn_until(lambda: watch.poll() is not None, 10)
    assert watch.wait(timeout=5) == 2
    assert watch.stderr is not None
    err = watch.stderr.read()
    assert re.search(rb"procobsrv: \d+ events \(", err) and b"Traceback" not in err, err
    assert err.endswith(
        b"procobsrv: writing the output failed: [Errno 28] No space left on device\n"
    )


# -- item 2: the reader does not read --------------------------------------------------------
SUMMARY = re.compile(rb"procobsrv: (\d+) events \(.*\), (\d+) lost, (\d+) not written")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_signal_ends_watch_within_a_second_though_stdout_is_blocked(sig: int) -> None:
    """A pipe nobody reads: the pipe fills, then the backlog; a stop signal still ends the
    watch within a second, and every event is either in the pipe or counted as not written."""
    read_end, write_end = os.pipe()
    try:
        watch = start_watch(stdout=write_end)
        os.close(write_end)
        storm = Storm(spawners=2, per_spawner=400)  # 2,400 events: far more than a pipe holds
        storm.wait()
        time.sleep(0.5)
        began = time.monotonic()
        watch.send_signal(sig)
        watch.wait(timeout=10)
        took = time.monotonic() - began
        assert watch.stderr is not None
        err = watch.stderr.read()
        os.set_blocking(read_end, False)
        out = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(read_end, 1 << 16):
                out += chunk
    finally:
        os.close(read_end)
    assert watch.returncode == 0 and b"Traceback" not in err, err
    assert took < 1.0, f"took {took:.2f} s to stop"
    found = SUMMARY.search(err)
    assert found is not None, err
    total, lost, unwritten = map(int, found.groups())
    written = out.count(b"\n") - 1  # the header
    assert lost == 0 and unwritten > 0 and written > 0, err
    assert written + unwritten == total, (written, unwritten, total)


def test_watch_sigint_under_load_exits_within_a_second_with_the_summary() -> None:
    watch = watch_tool.start_watch("--json")  # text mode: lines as a terminal shows them
    lines: list[str] = []
    assert watch.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(watch.stdout or ()))  # a terminal
    reader.start()
    storm = Storm(spawners=2, per_spawner=100_000, seconds=4.0)
    try:
        time.sleep(1.0)
        began = time.monotonic()
        watch.send_signal(signal.SIGINT)
        watch.wait(timeout=10)
        took = time.monotonic() - began
    finally:
        storm.stop()
        storm.wait()
        reader.join(5)
    assert watch.stderr is not None
    err = watch.stderr.read()
    assert took < 1.0, f"watch took {took:.2f} s to stop under load"
    assert watch.returncode == 0
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "procobsrv: " in err and " events (" in err and " lost" in err
    summary = err.strip().splitlines()[-1]
    shown = int(summary.split()[1])
    assert shown == len(lines) - sum('"kind":"lost"' in line for line in lines) > 1000


# -- item 5: SIGHUP ---------------------------------------------------------------------------
def test_sighup_ends_watch_with_its_summary() -> None:
    watch = start_watch("--json")
    spawn_until(lambda: False, 0.2)
    watch.send_signal(signal.SIGHUP)
    out, err = watch.communicate(timeout=5)
    assert watch.returncode == 0, err
    assert re.search(rb"procobsrv: \d+ events \(", err) and b"Traceback" not in err, err
    assert out and all(json.loads(line)["kind"] for line in out.splitlines())


#: SIGHUPs each sender sends back to back (a shell's builtin kill: about a microsecond apart).
SIGHUP_STORM = 30_000
SIGHUP_SENDERS = 8


def sighup_storm(pid: int) -> None:
    """SIGHUPs to ``pid`` from two shells at once, until each sent SIGHUP_STORM or ``pid``
    is gone: far faster than a handler can open a file."""
    loop = f"for i in $(seq {SIGHUP_STORM}); do kill -HUP {pid} 2>/dev/null || break; done"
    senders = [subprocess.Popen(["bash", "-c", loop]) for _ in range(SIGHUP_SENDERS)]
    for sender in senders:
        sender.wait(timeout=60)


def watch_to_file(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """`watch --output FILE` with its stderr in a file too (a pipe nobody reads changes the
    timing the SIGHUP tests need); returned once it watches."""
    require_connector()
    err = tmp_path / "stderr.txt"
    with err.open("wb") as f:
        watch = subprocess.Popen(
            [*TOOL, "watch", "--output", str(tmp_path / "events.jsonl")],
            stdout=subprocess.DEVNULL,
            stderr=f,
        )
    started(watch)
    assert wait_until(lambda: b"watching" in err.read_bytes(), 20), err.read_bytes()
    return watch, err


def test_back_to_back_sighups_reopen_the_output_without_piling_up(tmp_path: Path) -> None:
    """Each SIGHUP with --output reopens the file; thousands at once neither nest (no
    RecursionError) nor leave file descriptors open, and the watch still ends with its
    summary."""
    watch, err = watch_to_file(tmp_path)
    fds_before = len(os.listdir(f"/proc/{watch.pid}/fd"))
    sighup_storm(watch.pid)
    time.sleep(0.5)
    assert watch.poll() is None, err.read_text()
    fds_after = len(os.listdir(f"/proc/{watch.pid}/fd"))
    assert fds_after <= fds_before + 1, (fds_before, fds_after)
    watch.send_signal(signal.SIGINT)
    assert watch.wait(timeout=10) == 0, err.read_text()
    said = err.read_text()
    assert "Traceback" not in said and "RecursionError" not in said, said
    assert re.search(r"procobsrv: \d+ events \(", said) and "lines written to" in said, said


def test_sighups_during_the_stop_do_not_break_it(tmp_path: Path) -> None:
    """SIGHUPs keep coming while the watch stops (SIGINT) and until it is gone: no reopen
    after the output is closed (EBADF), no deadlock on the output's lock, no death by the
    signal's default action; status 0 and the summary."""
    watch, err = watch_to_file(tmp_path)
    watch.send_signal(signal.SIGINT)
    sighup_storm(watch.pid)
    assert watch.wait(timeout=10) == 0, err.read_text()
    said = err.read_text()
    assert "Traceback" not in said and "Bad file descriptor" not in said, said
    assert "lines written to" in said, said


# -- item 6: errors at start ----------------------------------------------------------------
def with_open_file_limit(limit: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


@pytest.mark.parametrize("limit", [5, 6])
@pytest.mark.usefixtures("connector")
def test_an_error_at_start_is_one_line_and_status_2(limit: int) -> None:
    """Too few file descriptors for the socket and the eventfds: the OSError becomes one
    line on stderr and status 2, never a traceback."""
    run = subprocess.run(
        [*TOOL, "watch", "--duration", "5"],
        capture_output=True,
        text=True,
        timeout=20,
        preexec_fn=with_open_file_limit(limit),
    )
    err = one_line_error(run)
    assert err.startswith("procobsrv: ") and "open files" in err, err
    assert run.stdout == ""


def test_a_closed_stdout_is_one_line_and_status_2() -> None:
    """Started with fd 1 closed (``watch >&-``): Python's sys.stdout is None."""
    run = subprocess.run(
        [*TOOL, "watch"],
        stderr=subprocess.PIPE,
        text=True,
        timeout=20,
        preexec_fn=lambda: os.close(1),
    )
    assert "standard output is closed" in one_line_error(run)


# -- item 3: control characters in text mode -----------------------------------------------
NASTY = b"two\nlines\x1b[31mred\x07\x7f\xc2\x9bC1\xe2\x80\xaeevil\xff"
NASTY_SHOWN = r"two\nlines\x1b[31mred\x07\x7f\x9bC1\u202eevil\xff"


def watch_a_nasty_process(*args: str) -> tuple[bytes, int]:
    """Watch (with ``args``) a shell whose $0 is ``procobsrv-nasty`` + NASTY: its output and pid."""
    watch = start_watch("--match", "procobsrv-nasty", *args)
    child = subprocess.Popen([b"/bin/sh", b"-c", b"sleep 0.2; :", b"procobsrv-nasty" + NASTY])
    child.wait()
    time.sleep(0.3)
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=5)
    assert watch.returncode == 0 and b"Traceback" not in err, err
    return out, child.pid


def test_text_output_escapes_control_characters_one_event_per_line() -> None:
    """An argument with a newline, an escape sequence, BEL, DEL, a C1 control, a bidi
    override and a byte that is not UTF-8: one line per event, each shown visibly."""
    out, pid = watch_a_nasty_process()
    lines = out.decode("ascii").splitlines()[1:]  # pure ASCII: every oddity was escaped
    mine = [line for line in lines if line.split()[2] == str(pid)]
    assert [line.split()[1] for line in mine] == ["exec", "exited"], out
    assert all(("procobsrv-nasty" + NASTY_SHOWN) in line for line in mine), mine
    event = re.compile(r"\d\d:\d\d:\d\d\.\d{3} (created|exec   |exited ) ")
    assert all(event.match(line) for line in lines), lines  # no line is the rest of an argument


def test_json_output_keeps_the_command_line_exact() -> None:
    out, pid = watch_a_nasty_process("--json")
    events = [json.loads(line) for line in out.splitlines()]
    mine = [e for e in events if e["pid"] == pid]
    assert [e["kind"] for e in mine] == ["exec", "exited"]
    assert os.fsencode(mine[0]["command_line"][3]) == b"procobsrv-nasty" + NASTY
