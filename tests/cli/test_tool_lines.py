"""The tool's own lines on stderr: one format for all of them, and a summary that counts
what was shown."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from tests.fakes.watch import start_watch

pytestmark = pytest.mark.kernel
TOOL = [sys.executable, "-m", "procobsrv"]


@pytest.mark.usefixtures("connector")
def test_every_line_of_the_tool_and_of_its_log_has_one_prefix() -> None:
    run = subprocess.run(
        [*TOOL, "-v", "watch", "--duration", "0.5"], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert any("monitoring started" in line for line in lines), lines  # a log line (-v)
    assert lines and all(line.startswith("procobsrv: ") for line in lines), lines


def test_summary_counts_the_matched_events_when_filtering() -> None:
    tag = "summary-marker"
    watch = start_watch("--json", "--match", tag)
    subprocess.run(["sh", "-c", "sleep 0.2; exit 2", tag], check=False)
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=10)
    shown = out.splitlines()
    assert shown and all(tag in json.dumps(json.loads(line)) for line in shown)
    summary = re.search(r"procobsrv: (\d+) events matched, of (\d+) events \(", err)
    assert summary, err
    assert int(summary[1]) == len(shown) and int(summary[2]) >= len(shown)
