"""Lifecycle on the real kernel: many cycles, stop under load, signals, fork."""

from __future__ import annotations

import errno
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import pytest

from procobsrv import ApplicationScope, CallbackHandler, MonitorError, QueuedItem
from procobsrv.linux.connector_source import ConnectorSource
from procobsrv.subscription import DEFAULT_STOP_TIMEOUT
from tests.fakes.collector import Collector
from tests.fakes.connector import break_connector_socket, monitoring
from tests.fakes.gauges import open_fds, rss_bytes, threads_now
from tests.fakes.storm import Storm

pytestmark = pytest.mark.kernel


class Counting(CallbackHandler):
    """Keeps no events (a Collector would grow with every event of the machine)."""

    def __init__(self) -> None:
        self.count = 0

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        self.count += 1


@pytest.mark.usefixtures("connector")
def test_1000_start_stop_cycles_leave_fds_threads_and_memory_flat() -> None:
    scope = ApplicationScope.get_instance(Counting())
    scope.stop_monitoring()
    for _ in range(300):  # warm-up: imports, caches, allocator arenas
        scope.start_monitoring(source="connector")  # tests/linux cycles the eBPF source
        scope.stop_monitoring()
    threads, fds, rss = threads_now(), open_fds(), rss_bytes()
    took = []
    for _ in range(1000):
        began = time.monotonic()
        assert scope.start_monitoring(source="connector")
        scope.stop_monitoring()
        took.append(time.monotonic() - began)
    grown = rss_bytes() - rss
    print(f"1000 cycles in {sum(took):.1f} s; RSS grew by {grown} bytes")
    assert threads_now() == threads
    assert open_fds() == fds
    assert grown < 1024 * 1024  # 1 KiB per cycle would be a leak; this allows noise only
    # A cycle that waits for a timeout (an ack, a join) is the defect looked for, not speed:
    # the typical cycle takes a few ms (about 30 under a load average of 40 on 2 cores).
    assert statistics.median(took) < 0.1 and max(took) < DEFAULT_STOP_TIMEOUT / 2


def test_stop_while_a_storm_runs() -> None:
    threads, fds = threads_now(), open_fds()
    handler = Collector()
    with monitoring(handler) as scope:
        storm = Storm(spawners=2, per_spawner=100_000, seconds=4.0)
        assert handler.wait_for(lambda: len(handler.items) > 2000, 10)
        began = time.monotonic()
        scope.stop_monitoring()
        took = time.monotonic() - began
        delivered = len(handler.items)
    storm.stop()
    storm.wait()
    stats = scope.stats()
    assert took < 1.0, f"stop took {took:.2f} s under load"
    assert stats.total == delivered and stats.queued == 0  # everything queued was delivered
    time.sleep(0.2)
    assert len(handler.items) == delivered  # and nothing after the stop
    assert threads_now() == threads and open_fds() == fds


_FORK = r"""
import json, os, subprocess, sys, threading, time
from procobsrv import ApplicationScope, EventKind
from tests.fakes.collector import Collector

def wait_exit(h, pid):
    return h.wait_for(lambda: bool(h.of(pid, EventKind.EXITED)), 10)

parent = Collector()
scope = ApplicationScope.get_instance(parent)
scope.start_monitoring()
from tests.fakes.session import session_handles
session_fds = session_handles(scope)  # the netlink socket and three eventfds

def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    report = {
        "threads": threading.active_count(),
        "monitoring_after_fork": scope.is_monitoring,
        "session_fds": len(session_fds),
        "inherited_fds": sum(map(is_open, session_fds)),
    }
    child = Collector()
    own = ApplicationScope.get_instance(child)
    report["started"] = own.start_monitoring()
    p = subprocess.Popen(["/bin/true"])
    p.wait()
    report["child_saw_its_own"] = wait_exit(child, p.pid)
    report["threads_while_monitoring"] = threading.active_count()
    os.write(w, json.dumps(report).encode())
    os.close(w)
    sys.exit(0)  # a normal exit: atexit stops the child's own monitoring, not the parent's
os.close(w)
report = json.loads(os.read(r, 65536))
_, status = os.waitpid(pid, 0)
report["child_status"] = status
report["parent_saw_child_exit"] = wait_exit(parent, pid)
p = subprocess.Popen(["/bin/true"])  # the parent's monitor still works after the child left
p.wait()
report["parent_still_monitoring"] = wait_exit(parent, p.pid)
report["parent_threads"] = threading.active_count()
scope.stop_monitoring()
print(json.dumps(report))
"""


@pytest.mark.usefixtures("connector")
def test_fork_does_not_duplicate_the_monitor_and_both_sides_keep_working() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _FORK], capture_output=True, text=True, timeout=60, cwd=os.getcwd()
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["threads"] == 1  # only the forking thread: no monitor, no retrieval
    assert report["monitoring_after_fork"] is False
    assert report["session_fds"] == 4
    assert report["inherited_fds"] == 0  # the parent's socket and eventfds were closed
    assert report["started"] is True and report["child_saw_its_own"] is True
    assert report["threads_while_monitoring"] == 3  # main, monitor, retrieval (calls the handler)
    assert report["child_status"] == 0
    assert report["parent_saw_child_exit"] is True
    assert report["parent_still_monitoring"] is True
    assert report["parent_threads"] == 3  # main, monitor, retrieval


@pytest.mark.usefixtures("connector")
def test_a_broken_kernel_socket_ends_monitoring_tells_the_handler_and_releases_all() -> None:
    """The monitor thread's receive fails for real (the netlink socket's fd is made a pipe):
    the handler hears why, monitoring ends by itself, nothing is left open or running."""
    handler = Collector()
    threads, fds = threads_now(), open_fds()
    source = ConnectorSource()
    scope = ApplicationScope.get_instance(handler)
    assert scope.start_monitoring(source=source)
    try:
        break_connector_socket(source.wait_handle)
        assert handler.wait_for(lambda: bool(handler.errors), 10), "on_error was not called"
        (error,) = handler.errors
        assert isinstance(error, MonitorError) and "Socket operation on non-socket" in str(error)
        assert isinstance(error.__cause__, OSError) and error.__cause__.errno == errno.ENOTSOCK
        assert not scope.is_monitoring and scope.stats().error is error
        for t in threads_now() - threads:
            t.join(5)
        assert threads_now() == threads
        assert open_fds() == fds
    finally:
        scope.stop_monitoring()
    with monitoring(handler):  # the next session works
        child = subprocess.Popen(["/bin/true"])
        child.wait()
        assert handler.wait_exit(child.pid).exit_code == 0
