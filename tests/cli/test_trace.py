"""``procobsrv trace`` on the real kernel: a real ``make -j2`` of a small C project, commands
that outlive their shell, fail, are killed or do not exist, and the HTML page in Chromium."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import browser
from tests.fakes.availability import require_tool

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("connector")]
TOOL = [sys.executable, "-m", "procobsrv"]
SOURCES = 6  # f1.c ... f6.c, and main.c
MAKEFILE = """\
OBJS = main.o {objs}
app: $(OBJS)
\t$(CC) -o $@ $(OBJS)
%.o: %.c
\t$(CC) -O2 -c $< -o $@
"""


def trace(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TOOL, "trace", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def c_project(where: Path, *, broken: str | None = None) -> Path:
    """A small C program in ``where``: main.c and f1.c ... f6.c, linked by make."""
    require_tool("gcc")
    require_tool("make")
    where.mkdir()
    for n in range(1, SOURCES + 1):
        body = f"int f{n}(void) {{ return {n}; }}\n"
        (where / f"f{n}.c").write_text(body if broken != f"f{n}.c" else "int f(void) { oops }\n")
    (where / "main.c").write_text("int f1(void);\nint main(void) { return f1() - 1; }\n")
    objs = " ".join(f"f{n}.o" for n in range(1, SOURCES + 1))
    (where / "Makefile").write_text(MAKEFILE.format(objs=objs))
    return where


def complete_events(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    return [e for e in data["traceEvents"] if e["ph"] == "X"]


def by_argv(events: list[dict[str, Any]], *argv: str) -> list[dict[str, Any]]:
    return [e for e in events if (e["args"]["argv"] or [])[: len(argv)] == list(argv)]


def test_make_j2_whole_tree_in_the_json_and_the_text(tmp_path: Path) -> None:
    project = c_project(tmp_path / "proj")
    run = trace("-o", "trace.json", "--", "make", "-j2", cwd=project)
    assert run.returncode == 0, run.stderr
    assert (project / "app").exists()
    events = complete_events(project / "trace.json")
    (root,) = by_argv(events, "make", "-j2")
    assert root["args"]["exit_code"] == 0 and root["ts"] < 50_000  # started within 50 ms
    compiles = by_argv(events, "cc", "-O2", "-c")
    assert sorted(e["args"]["argv"][3] for e in compiles) == sorted(
        ["main.c", *(f"f{n}.c" for n in range(1, SOURCES + 1))]
    )
    assert len(by_argv(events, "cc", "-o", "app")) == 1
    assert all(e["args"]["exit_code"] == 0 for e in events)
    # gcc's own children (cc1, as, collect2, ld) are there: the tree, not only make's children
    names = {e["name"] for e in events}
    assert {"make", "cc", "cc1", "as", "ld"} <= names, names
    # -j2: two compilers ran at the same time
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in compiles)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), spans
    # nested: every child starts after and ends before its parent (one track each)
    by_pid = {e["args"]["pid"]: e for e in events}
    for e in events:
        parent = by_pid.get(e["args"]["ppid"])
        if parent is not None:
            assert parent["ts"] <= e["ts"]
    assert len({e["tid"] for e in events}) == len(events)
    # the text tree on stderr: a line per process, with start, duration, status and argv
    lines = run.stderr.splitlines()
    assert lines[0].startswith("procobsrv: trace of make -j2: exit status 0")
    assert any(line.endswith("make -j2") and " 0 " in line for line in lines)
    assert any("└─ cc -o app main.o" in line for line in lines), run.stderr
    assert sum("cc -O2 -c" in line for line in lines) == SOURCES + 1


def test_html_timeline_loads_in_chromium_without_console_errors(tmp_path: Path) -> None:
    project = c_project(tmp_path / "proj")
    run = trace("--html", "trace.html", "-o", "trace.json", "--", "make", "-j2", cwd=project)
    assert run.returncode == 0, run.stderr
    page = (project / "trace.html").read_text()
    assert "<script src" not in page and "http://" not in page.replace(
        "http://www.w3.org/2000/svg", ""
    )
    shot = tmp_path / "timeline.png"
    loaded = browser.load(project / "trace.html", tmp_path, screenshot=shot)
    assert loaded.console == []
    processes = len(complete_events(project / "trace.json"))
    assert loaded.dom.count('class="bar"') == processes
    assert 'id="timeline"' in loaded.dom and "make -j2" in loaded.dom
    assert shot.stat().st_size > 10_000  # a drawn chart, not a blank page


def test_failed_build_status_and_the_failed_compiler(tmp_path: Path) -> None:
    project = c_project(tmp_path / "proj", broken="f3.c")
    run = trace("-o", "trace.json", "--", "make", cwd=project)
    assert run.returncode == 2, run.stderr  # make's status
    (failed,) = by_argv(complete_events(project / "trace.json"), "cc", "-O2", "-c", "f3.c")
    assert failed["args"]["exit_code"] == 1 and failed["args"]["status"] == "1"


def test_processes_that_outlive_the_command_and_are_reparented(tmp_path: Path) -> None:
    """The shell exits 3 at once; a background job and a daemonized grandchild (its parent
    exits first, so the kernel re-parents it) still run: trace waits for them."""
    script = '(sleep 0.6; true) & sh -c "sleep 0.4 &"; exit 3'
    started = time.monotonic()
    run = trace("-o", str(tmp_path / "t.json"), "--", "sh", "-c", script)
    assert run.returncode == 3, run.stderr
    assert time.monotonic() - started > 0.6
    events = complete_events(tmp_path / "t.json")
    (late,) = by_argv(events, "sleep", "0.6")
    (orphan,) = by_argv(events, "sleep", "0.4")
    (shell,) = [e for e in events if e["tid"] == 1]  # the root's track is the first
    assert shell["args"]["argv"] == ["sh", "-c", script]
    assert late["args"]["status"] == orphan["args"]["status"] == "0"
    assert late["dur"] >= 600_000 and orphan["dur"] >= 400_000
    assert orphan["ts"] + orphan["dur"] > shell["ts"] + shell["dur"]  # outlived it


def test_timeout_shows_what_still_runs(tmp_path: Path) -> None:
    run = trace(
        "--timeout", "0.3", "-o", str(tmp_path / "t.json"), "--", "sh", "-c", "sleep 30 & exit 0"
    )
    try:
        assert run.returncode == 0, run.stderr
        (sleeper,) = by_argv(complete_events(tmp_path / "t.json"), "sleep", "30")
        assert sleeper["args"]["status"] == "running" and sleeper["args"]["exit_code"] is None
        assert any(" running " in line and "sleep 30" in line for line in run.stderr.splitlines())
    finally:
        for e in complete_events(tmp_path / "t.json"):
            if e["args"]["argv"] == ["sleep", "30"]:
                os.kill(e["args"]["pid"], signal.SIGKILL)


def test_killed_command_status_is_128_plus_the_signal(tmp_path: Path) -> None:
    run = trace("-o", str(tmp_path / "t.json"), "--", "sh", "-c", "kill -TERM $$")
    assert run.returncode == 128 + signal.SIGTERM, run.stderr
    (shell,) = complete_events(tmp_path / "t.json")
    assert shell["args"]["signal"] == signal.SIGTERM and shell["args"]["status"] == "SIGTERM"


def test_command_not_found_is_127_in_one_line(tmp_path: Path) -> None:
    run = trace("--", "no-such-command-procobsrv")
    assert run.returncode == 127
    assert run.stderr == "procobsrv: no-such-command-procobsrv: command not found\n"


def test_not_executable_is_126(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\ntrue\n")
    run = trace("--", str(script))
    assert run.returncode == 126
    assert run.stderr.count("\n") == 1 and "Permission denied" in run.stderr


def test_stdout_closed_still_writes_the_file_and_the_tree(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    command = [*TOOL, "trace", "-o", str(out), "--", "sh", "-c", "exit 4"]
    run = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *command], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 4, run.stderr
    assert "Traceback" not in run.stderr
    assert "procobsrv: trace of sh -c 'exit 4': exit status 4" in run.stderr
    assert len(complete_events(out)) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["trace"],
        ["trace", "--"],
        ["trace", "--timeout", "-1", "--", "true"],
        ["trace", "--timeout", "1e300", "--", "touch", "MARKER"],  # longer than a wait can be
        ["trace", "-o", "/nonexistent-dir/t.json", "--", "touch", "MARKER"],
    ],
)
def test_refused_in_one_line_before_running_anything(args: list[str], tmp_path: Path) -> None:
    run = subprocess.run([*TOOL, *args], capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert run.returncode == 2, run
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "MARKER").exists()


def wait_for_child(parent: int, cmdline: bytes, timeout: float = 30) -> None:
    """Until a child of ``parent`` runs with this /proc/PID/cmdline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == parent and (entry / "cmdline").read_bytes() == cmdline:
                    return
            except (OSError, ValueError, IndexError):
                continue
        time.sleep(0.05)
    raise AssertionError(f"no child {cmdline!r} of {parent}")


def test_sigterm_to_trace_goes_to_the_command_and_the_report_is_still_written(
    tmp_path: Path,
) -> None:
    out = tmp_path / "t.json"
    tracing = subprocess.Popen(
        [*TOOL, "trace", "-o", str(out), "--", "sleep", "30"],
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_child(tracing.pid, b"sleep\x0030\x00")  # spawned: trace passes signals on now
    tracing.send_signal(signal.SIGTERM)
    _, err = tracing.communicate(timeout=30)
    assert tracing.returncode == 128 + signal.SIGTERM, err
    (sleeper,) = complete_events(out)
    assert sleeper["args"]["argv"] == ["sleep", "30"] and sleeper["args"]["status"] == "SIGTERM"
    assert "exit status 143" in err
