"""The console tool as a user runs it: real processes, real signals, real namespaces."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import require_connector, unavailable

pytestmark = pytest.mark.kernel
TOOL = [sys.executable, "-m", "procobsrv"]


def start_watch(*args: str) -> subprocess.Popen[str]:
    require_connector()
    proc = subprocess.Popen([*TOOL, "watch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stderr is not None
    assert "watching" in proc.stderr.readline()  # subscribed: from here on nothing is missed
    return proc


def test_demo_observes_all_ten() -> None:
    require_connector()
    run = subprocess.run([*TOOL, "demo"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "observed 10/10 starts and 10/10 exits" in run.stdout
    assert run.stdout.count("started pid") == 10 and run.stdout.count("by SIGTERM") == 10


def test_watch_json_then_sigterm_prints_summary() -> None:
    watch = start_watch("--json", "--kind", "exited", "--kind", "exec")
    child = subprocess.Popen(["sh", "-c", "exit 9"])
    child.wait()
    time.sleep(0.3)
    began = time.monotonic()
    watch.send_signal(signal.SIGTERM)
    out, err = watch.communicate(timeout=5)
    assert time.monotonic() - began < 1.0
    assert watch.returncode == 0
    events = [json.loads(line) for line in out.splitlines()]
    mine = [e for e in events if e["pid"] == child.pid]
    assert [e["kind"] for e in mine] == ["exec", "exited"]
    assert mine[1]["exit_code"] == 9 and mine[1]["ppid"] == os.getpid()
    assert all(e["kind"] in ("exec", "exited") for e in events)
    assert "events (" in err and "0 lost" in err


def test_watch_match_filters_by_command_line() -> None:
    watch = start_watch("--match", "procobsrv-needle")
    subprocess.run(["sh", "-c", "sleep 0.2; : procobsrv-needle"], check=True)
    subprocess.run(["sh", "-c", "true haystack"], check=True)
    time.sleep(0.3)
    watch.send_signal(signal.SIGINT)
    out, _ = watch.communicate(timeout=5)
    lines = out.splitlines()[1:]  # after the header
    assert lines and all("procobsrv-needle" in line for line in lines)


def test_outside_the_initial_network_namespace_the_error_says_what_to_do() -> None:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        unavailable("needs root and unshare(1) to create a network namespace")
    run = subprocess.run([unshare, "--net", *TOOL, "watch"], capture_output=True, text=True,
                         timeout=20)  # fmt: skip
    assert run.returncode == 2
    assert "network namespace" in run.stderr and "host" in run.stderr
    assert "Traceback" not in run.stderr
