"""``procobsrv watch`` as a shell user meets it: real pipes, real signals, real processes."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from tests.conftest import require_connector

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
        (["watch", "--kind", "start"], "created"),  # the error names what is accepted
        (["watch", "--bogus"], "--bogus"),
        ([], "COMMAND"),
        (["nonsense"], "nonsense"),
    ],
)
def test_bad_arguments_get_one_line_and_status_2(args: list[str], said: str) -> None:
    err = one_line_error(run_tool(*args))
    assert said in err and err.startswith("procobsrv"), err


def test_kind_names_accepted_are_the_names_shown() -> None:
    """--kind takes created/exec/exited, the text output's EVENT column shows the same."""
    require_connector()
    watch = subprocess.Popen([*TOOL, "watch", "--kind", "created", "--kind", "exited"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
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


# -- item 6: errors at start ----------------------------------------------------------------
def with_open_file_limit(limit: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


@pytest.mark.parametrize("limit", [5, 6])
def test_an_error_at_start_is_one_line_and_status_2(limit: int) -> None:
    """Too few file descriptors for the socket and the eventfds: the OSError becomes one
    line on stderr and status 2, never a traceback."""
    require_connector()
    run = subprocess.run([*TOOL, "watch", "--duration", "5"], capture_output=True, text=True,
                         timeout=20, preexec_fn=with_open_file_limit(limit))  # fmt: skip
    err = one_line_error(run)
    assert err.startswith("procobsrv: ") and "open files" in err, err
    assert run.stdout == ""


# -- item 3: control characters in text mode -----------------------------------------------
NASTY = b"two\nlines\x1b[31mred\x07\x7f\xc2\x9bC1\xe2\x80\xaeevil\xff"
NASTY_SHOWN = r"two\nlines\x1b[31mred\x07\x7f\x9bC1\u202eevil\xff"


def test_text_output_escapes_control_characters_one_event_per_line() -> None:
    """An argument with a newline, an escape sequence, BEL, DEL, a C1 control, a bidi
    override and a byte that is not UTF-8: one line per event, each shown visibly."""
    require_connector()
    watch = subprocess.Popen([*TOOL, "watch", "--match", "procobsrv-nasty"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert watch.stderr is not None and b"watching" in watch.stderr.readline()
    child = subprocess.Popen([b"/bin/sh", b"-c", b"sleep 0.2; :", b"procobsrv-nasty" + NASTY])
    child.wait()
    time.sleep(0.3)
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=5)
    assert watch.returncode == 0 and b"Traceback" not in err, err
    lines = out.decode("ascii").splitlines()[1:]  # pure ASCII: every oddity was escaped
    mine = [line for line in lines if line.split()[2] == str(child.pid)]
    assert [line.split()[1] for line in mine] == ["exec", "exited"], out
    assert all(("procobsrv-nasty" + NASTY_SHOWN) in line for line in mine), mine
    event = re.compile(r"\d\d:\d\d:\d\d\.\d{3} (created|exec   |exited ) ")
    assert all(event.match(line) for line in lines), lines  # no line is the rest of an argument


def test_json_output_keeps_the_command_line_exact() -> None:
    require_connector()
    watch = subprocess.Popen([*TOOL, "watch", "--json", "--match", "procobsrv-nasty"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert watch.stderr is not None and b"watching" in watch.stderr.readline()
    child = subprocess.Popen([b"/bin/sh", b"-c", b"sleep 0.2; :", b"procobsrv-nasty" + NASTY])
    child.wait()
    time.sleep(0.3)
    watch.send_signal(signal.SIGINT)
    out, _ = watch.communicate(timeout=5)
    events = [json.loads(line) for line in out.splitlines()]
    mine = [e for e in events if e["pid"] == child.pid]
    assert [e["kind"] for e in mine] == ["exec", "exited"]
    assert os.fsencode(mine[0]["command_line"][3]) == b"procobsrv-nasty" + NASTY
