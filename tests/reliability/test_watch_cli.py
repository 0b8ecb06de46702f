"""``procobsrv watch`` as a shell user meets it: real pipes, real signals, real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

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
