"""Every program in examples/ runs against the real connector and reports a real child.

Each example is started as a user would start it (``python examples/NAME.py ...``); the
test waits for it to say it is watching, runs a child of its own, stops the example the
way a user does (Ctrl+C, i.e. SIGINT) and checks that the output names that child.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.availability import require_connector
from tests.fakes.watch import validate_lines

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.kernel


class Example:
    """A running example; its stderr is read as it comes so the test can wait for a line."""

    def __init__(self, name: str, *args: str) -> None:
        require_connector()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._stderr: queue.Queue[str] = queue.Queue()
        self.stderr_lines: list[str] = []
        assert self.proc.stderr is not None
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        for line in self.proc.stderr or ():
            self._stderr.put(line)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until the example says it is watching (monitoring has started)."""
        while True:
            try:
                line = self._stderr.get(timeout=timeout)
            except queue.Empty:
                self.proc.kill()
                pytest.fail(f"no 'watching' line within {timeout} s: {self.stderr_lines}")
            self.stderr_lines.append(line)
            if "watching" in line:
                return

    def interrupt(self, timeout: float = 10.0) -> str:
        """Ctrl+C, then its stdout; it must end on its own, with status 0."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()  # stderr is the pump's: communicate() would race it
        self.proc.wait(timeout)
        self._pump_thread.join(timeout)
        while not self._stderr.empty():
            self.stderr_lines.append(self._stderr.get())
        assert self.proc.returncode == 0, self.stderr_lines
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def started() -> Iterator[list[Example]]:
    examples: list[Example] = []
    yield examples
    for example in examples:
        example.kill()


def run_child(*argv: str) -> int:
    child = subprocess.Popen(argv)
    child.wait()
    return child.pid


def test_json_log_writes_the_child_as_json(started: list[Example]) -> None:
    example = Example("json_log.py")
    started.append(example)
    example.wait_ready()
    pid = run_child("sh", "-c", "sleep 0.1; exit 5", "json-log-marker")
    out = example.interrupt()
    records = [json.loads(line) for line in out.splitlines()]
    mine = [r for r in records if r.get("pid") == pid]
    assert [r["kind"] for r in mine][-1] == "exited", mine
    assert mine[-1]["exit_code"] == 5
    assert any(r["kind"] == "exec" and "json-log-marker" in r["command_line"] for r in mine)
    assert all("host" in r for r in records)
    validate_lines(out.splitlines())  # the agent's records: schema_version, id, time...


def test_cmdline_alert_reports_only_the_matching_command(started: list[Example]) -> None:
    example = Example("cmdline_alert.py", r"alert-marker-[0-9]+")
    started.append(example)
    example.wait_ready()
    # The shells live 0.1 s: long enough for /proc to be read at their exec.
    hit = run_child("sh", "-c", "sleep 0.1; true", "alert-marker-42")
    miss = run_child("sh", "-c", "sleep 0.1; true", "something-else")
    out = example.interrupt()
    alerts = [line for line in out.splitlines() if line.startswith("ALERT")]
    assert len(alerts) == 1, out
    assert f"ALERT pid {hit} parent {os.getpid()} user " in alerts[0]
    assert "alert-marker-42" in alerts[0]
    assert str(miss) not in out
    assert any("1 alerts" in line for line in example.stderr_lines)


def test_lifetimes_measures_a_sleep_of_300_ms(started: list[Example]) -> None:
    example = Example("lifetimes.py", "--each", "--min-ms", "100")
    started.append(example)
    example.wait_ready()
    pid = run_child("sleep", "0.3")
    out = example.interrupt()
    line = next((ln for ln in out.splitlines() if f"pid {pid} " in ln), None)
    assert line is not None, out
    ms = float(line.split()[0])
    assert 290 <= ms < 3000, line  # the kernel's timestamps: never shorter than the sleep
    summary = next(ln for ln in out.splitlines() if ln.startswith("sleep "))
    assert int(summary.split()[1]) >= 1


@pytest.mark.usefixtures("connector")
def test_watch_tree_follows_the_tree_until_its_last_member_ends() -> None:
    # The shell exits at once with 3; its background child lives on for 0.3 s.
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "watch_tree.py"),
            "--timeout",
            "10",
            "--",
            "sh",
            "-c",
            "sleep 0.3 & exit 3",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    summary = re.fullmatch(
        r"tree of (\d+) ended: 2 processes in ([\d.]+) s, command exit code 3", lines[-1]
    )
    assert summary, result.stdout
    root = summary.group(1)
    assert f"{root} ended (exit 3)" in lines
    sleeper = next(ln for ln in lines if ln.endswith("runs sleep 0.3"))
    assert sleeper.startswith("  ")  # one level below the root
    # The tree ends with the sleep, after the shell: its last line before the summary.
    assert lines[-2] == sleeper.replace("runs sleep 0.3", "ended (exit 0)")
    assert float(summary.group(2)) >= 0.29
