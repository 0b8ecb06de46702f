"""The console tool as a user runs it: real processes, real signals, real namespaces."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.fakes.availability import require_connector, unavailable
from tests.fakes.connector import break_connector_socket
from tests.fakes.session import wait_for_source
from tests.fakes.watch import start_watch

pytestmark = pytest.mark.kernel
TOOL = [sys.executable, "-m", "procobsrv"]


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
    run = subprocess.run(
        [unshare, "--net", *TOOL, "watch", "--source", "connector"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert run.returncode == 2
    assert "network namespace" in run.stderr and "host" in run.stderr
    assert "Traceback" not in run.stderr


def thread_policies(pid: int) -> dict[int, int]:
    """Scheduling policy (0 SCHED_OTHER, 1 SCHED_FIFO) of each thread, from /proc stat."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            stat = f.read()
        out[int(tid)] = int(stat[stat.rfind(")") + 2 :].split()[38])  # field 41: policy
    return out


def test_watch_realtime_raises_only_the_monitoring_threads_and_still_reports() -> None:
    if os.geteuid() != 0:
        unavailable("SCHED_FIFO needs root (or CAP_SYS_NICE)")
    watch = start_watch("--realtime", "--json", "--kind", "exited")
    try:
        policies = thread_policies(watch.pid)
        assert policies.pop(watch.pid) == 0  # the main thread is back to normal
        # Monitor and retrieval (which calls watch's lone handler): SCHED_FIFO; the output
        # writer (stdout) stays normal.
        assert sorted(policies.values()) == [0, 1, 1]
        child = subprocess.Popen(["sh", "-c", "exit 4"])
        child.wait()
        time.sleep(0.3)
    finally:
        watch.send_signal(signal.SIGTERM)
        out, err = watch.communicate(timeout=5)
    assert watch.returncode == 0, err
    exits = [json.loads(line) for line in out.splitlines()]
    assert {"pid": child.pid, "exit_code": 4}.items() <= next(
        e for e in exits if e["pid"] == child.pid
    ).items()


def test_watch_realtime_refused_says_what_to_do() -> None:
    setpriv, prlimit = shutil.which("setpriv"), shutil.which("prlimit")
    if setpriv is None or prlimit is None or os.geteuid() != 0:
        unavailable("needs root, setpriv(1) and prlimit(1) to drop CAP_SYS_NICE")
    require_connector()
    no_nice = [prlimit, "--rtprio=0", setpriv, "--inh-caps=-sys_nice", "--bounding-set=-sys_nice"]
    run = subprocess.run(
        [*no_nice, *TOOL, "watch", "--realtime"], capture_output=True, text=True, timeout=20
    )
    assert run.returncode == 2, run.stderr
    assert "real-time scheduling was refused" in run.stderr and "CAP_SYS_NICE" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.usefixtures("connector")
def test_watch_ends_with_status_2_when_the_kernel_side_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The connector socket breaks under a running watch: it ends by itself and says why."""
    from procobsrv.cli.main import main

    def break_the_socket() -> None:
        source = wait_for_source(timeout=10)
        if source is not None:
            break_connector_socket(source.wait_handle)

    breaker = threading.Thread(target=break_the_socket)
    breaker.start()
    began = time.monotonic()
    status = main(["watch", "--source", "connector", "--json", "--duration", "30"])
    breaker.join()
    assert status == 2 and time.monotonic() - began < 10
    err = capsys.readouterr().err
    assert "procobsrv: monitoring stopped: reading the connector socket failed" in err
    assert "events (" in err  # the summary still came first
