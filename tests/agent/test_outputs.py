"""`watch --output FILE`: appended JSON lines, reopened on SIGHUP, whole lines after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from procobsrv.agent.outputs import open_append
from tests.fakes.gauges import wait_until
from tests.fakes.watch import run_markers, validate_lines, watching

pytestmark = pytest.mark.kernel


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def has_marker(path: Path, tag: str) -> bool:
    return any(tag in line for line in lines(path))


def all_exited(path: Path, pids: list[int]) -> bool:
    """Every one of ``pids`` has its exit in the file: its events are all written."""
    exited = set()
    for line in lines(path):
        if '"kind":"exited"' in line:
            exited.add(json.loads(line)["pid"])
    return set(pids) <= exited


@pytest.mark.usefixtures("connector")
def test_appends_and_reopens_on_sighup_after_a_move(tmp_path: Path) -> None:
    """logrotate's convention: move the file, SIGHUP, and the agent writes a new file."""
    log = tmp_path / "events.jsonl"
    log.write_text('{"earlier": "content stays"}\n')
    rotated = tmp_path / "events.jsonl.1"
    with watching("--output", str(log)) as watch:
        before = run_markers("before-rotation")
        assert wait_until(lambda: all_exited(log, before)), lines(log)[-5:]
        log.rename(rotated)
        watch.send_signal(signal.SIGHUP)
        assert wait_until(log.exists), "SIGHUP did not open the path anew"
        run_markers("after-rotation")
        assert wait_until(lambda: has_marker(log, "after-rotation")), lines(log)[-5:]
        watch.send_signal(signal.SIGTERM)
        _, err = watch.communicate(timeout=20)
    assert watch.returncode == 0, err
    assert "lines written to" in err and "lost" in err  # the summary still goes to stderr
    old, new = lines(rotated), lines(log)
    assert old[0] == '{"earlier": "content stays"}'
    validate_lines(old[1:])
    validate_lines(new)
    assert has_marker(rotated, "before-rotation") and not has_marker(rotated, "after-rotation")
    assert not has_marker(log, "before-rotation")


@pytest.mark.usefixtures("connector")
def test_a_killed_agent_leaves_only_whole_lines(tmp_path: Path) -> None:
    """SIGKILL in the middle of a storm: each line was one write(), so none is cut."""
    log = tmp_path / "events.jsonl"
    storm = "for i in $(seq 400); do /bin/true --storm-marker; done"
    with watching("--output", str(log)) as watch:
        subprocess.run(["sh", "-c", storm], check=True)
        assert wait_until(lambda: len(lines(log)) > 300)
        watch.kill()
        watch.wait()
    data = log.read_bytes()
    assert data.endswith(b"\n")
    records = [json.loads(line) for line in data.decode().splitlines()]
    assert sum("--storm-marker" in (r.get("command_line") or []) for r in records) > 50


def test_an_unwritable_output_says_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "procobsrv", "watch", "--output", str(tmp_path / "no/dir/x")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "cannot open the output file" in result.stderr and "directory" in result.stderr


# -- opening and writing the file (no kernel needed) -----------------------------------------
def test_a_link_of_this_user_is_followed_and_a_cut_last_line_is_ended_first(
    tmp_path: Path,
) -> None:
    """The caller's own link (like root's /dev/stdout) is followed; a file whose last line
    was cut (a crash, a full disk) gets a newline before the first new line."""
    real = tmp_path / "real.jsonl"
    real.write_bytes(b'{"whole":1}\n{"cut":')
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    fd = open_append(str(link))
    try:
        os.write(fd, b'{"next":2}\n')
    finally:
        os.close(fd)
    assert real.read_bytes() == b'{"whole":1}\n{"cut":\n{"next":2}\n'
