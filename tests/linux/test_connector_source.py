"""The real kernel: spawn real children and check the exact events that come back."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procobsrv import ApplicationScope, EventKind
from procobsrv.linux import connector_abi as abi
from procobsrv.linux.connector_source import RECHECK_S
from tests.fakes.collector import Collector
from tests.fakes.connector import message, replay_source
from tests.fakes.gauges import wait_until

pytestmark = pytest.mark.kernel

CREATED, EXEC, EXITED = EventKind.CREATED, EventKind.EXEC, EventKind.EXITED


def kinds(items: list) -> list[EventKind]:
    return [i.kind for i in items]


def test_shell_exiting_7(collector: Collector) -> None:
    sh = os.path.realpath(shutil.which("sh") or "/bin/sh")
    child = subprocess.Popen(["sh", "-c", "exit 7"])
    assert child.wait() == 7
    ended = collector.wait_exit(child.pid)
    items = collector.of(child.pid)
    assert kinds(items) == [CREATED, EXEC, EXITED]
    created, execd, _ = items
    assert created.parent_id == os.getpid()
    assert created.create and not execd.create and not ended.create
    assert execd.parent_id == os.getpid()
    assert ended.exit_code == 7 and ended.signal is None
    # exec may race the process's end: when /proc answered in time it is the shell
    if execd.image is not None:
        assert execd.image == sh
        assert execd.command_line == ["sh", "-c", "exit 7"]
    assert collector.params[0] == "test-param"


def test_fork_without_exec(collector: Collector) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    ended = collector.wait_exit(pid)
    assert kinds(collector.of(pid)) == [CREATED, EXITED]
    created = collector.of(pid, CREATED)[0]
    assert created.parent_id == os.getpid()
    # A forked child runs its parent's program: the image is inherited, no /proc race.
    assert created.image == os.path.realpath(sys.executable)
    assert ended.exit_code == 3
    assert ended.image == created.image
    assert ended.key == created.key == (pid, created.start_ns) and created.start_ns > 0


def test_killed_by_sigkill(collector: Collector) -> None:
    child = subprocess.Popen(["sleep", "30"])
    assert collector.wait_for(lambda: bool(collector.of(child.pid, EXEC)))
    execd = collector.of(child.pid, EXEC)[0]
    assert execd.image == os.path.realpath(shutil.which("sleep") or "")
    assert execd.command_line == ["sleep", "30"]
    child.kill()
    assert child.wait() == -signal.SIGKILL
    ended = collector.wait_exit(child.pid)
    assert ended.exit_code is None and ended.signal == signal.SIGKILL
    assert ended.image == execd.image  # remembered from the exec
    assert ended.command_line == ["sleep", "30"]


def test_multithreaded_process_is_one_process(collector: Collector) -> None:
    code = (
        "import threading\n"
        "ts=[threading.Thread(target=lambda: None) for _ in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "raise SystemExit(5)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    assert child.wait() == 5
    ended = collector.wait_exit(child.pid)
    assert ended.exit_code == 5
    assert kinds(collector.of(child.pid)) == [CREATED, EXEC, EXITED]
    # No thread ever shows up as a process of its own with this parent.
    assert collector.of({i.process_id for i in collector.items if i.parent_id == child.pid}) == []


def test_timestamps_come_from_the_kernel(collector: Collector) -> None:
    before = time.time()
    child = subprocess.Popen(["true"])
    child.wait()
    collector.wait_exit(child.pid)
    after = time.time()
    created, execd, ended = collector.of(child.pid)
    assert before - 0.05 <= created.timestamp <= execd.timestamp <= ended.timestamp <= after + 0.05
    assert created.monotonic_ns <= execd.monotonic_ns <= ended.monotonic_ns <= time.monotonic_ns()


def test_burst_of_500_true(collector: Collector) -> None:
    """The issue's acceptance test: 500 x /bin/true, every event, nothing lost."""
    children = [subprocess.Popen(["/bin/true"]) for _ in range(500)]
    for child in children:
        assert child.wait() == 0
    pids = {c.pid for c in children}
    assert collector.wait_for(lambda: len(collector.of(pids, EXITED)) == 500, 20)
    for kind in (CREATED, EXEC, EXITED):
        got = collector.of(pids, kind)
        assert len(got) == 500, kind
        assert {i.process_id for i in got} == pids
    assert all(i.exit_code == 0 for i in collector.of(pids, EXITED))
    assert all(i.parent_id == os.getpid() for i in collector.of(pids, CREATED))
    assert collector.lost == 0
    stats = ApplicationScope.get_instance().stats()
    assert stats.lost == 0 and stats.handler_errors == 0


@pytest.mark.usefixtures("connector")
def test_process_started_before_monitoring_keeps_one_key() -> None:
    """Its fork was never seen: start_ns is 0 on every event and the parent comes from /proc."""
    child = subprocess.Popen(
        ["sh", "-c", "echo ready; read _; exec sleep 0.2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"  # the shell's own exec is long over
    handler = Collector()
    scope = ApplicationScope.get_instance(handler)
    assert scope.start_monitoring(source="connector")  # the eBPF source knows the start
    try:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.close()
        assert child.wait() == 0
        ended = handler.wait_exit(child.pid)
        assert kinds(handler.of(child.pid)) == [EXEC, EXITED]
        execd = handler.of(child.pid, EXEC)[0]
        assert execd.key == ended.key == (child.pid, 0)
        assert execd.parent_id == os.getpid()
        assert execd.image == ended.image == os.path.realpath(shutil.which("sleep") or "")
    finally:
        scope.stop_monitoring()


# -- the KernelSource shape (open once, close any number of times, reopen) ----------------------
@pytest.mark.usefixtures("connector")
def test_the_connector_source_opens_once_closes_twice_and_reopens() -> None:
    from procobsrv import MonitorError
    from procobsrv.linux.connector import ConnectorSocket
    from procobsrv.linux.connector_source import ConnectorSource
    from procobsrv.linux.sync import is_readable

    sock = ConnectorSocket()
    source = ConnectorSource(read_proc=False, socket=sock)
    source.close()  # safe before open
    for use in (lambda: source.wait_handle, source.fetch_batch):
        with pytest.raises(MonitorError, match="not open"):
            use()
    for _ in range(2):  # a closed source opens again, with a new subscription
        source.open()
        try:
            assert sock.acknowledged
            with pytest.raises(MonitorError, match="already open"):
                source.open()
            child = subprocess.Popen(["/bin/true"])
            child.wait()
            ended: list[int] = []
            deadline = time.monotonic() + 10
            while not ended and time.monotonic() < deadline:
                is_readable(source.wait_handle, 0.1)
                batch = source.fetch_batch()
                assert batch.lost == 0
                ended += [i.process_id for i in batch.items if i.kind is EXITED]
                ended = [pid for pid in ended if pid == child.pid]
            assert ended == [child.pid]
        finally:
            source.close()
        source.close()  # idempotent
        assert not sock.acknowledged
        with pytest.raises(MonitorError, match="not open"):
            source.fetch_batch()


def test_a_reopened_replay_source_subscribes_again_and_counts_no_loss_across_the_gap() -> None:
    """Before: a reopened ConnectorSource neither waited for a new ack nor forgot the
    sequences of its last subscription, so every event the kernel sent while it was closed
    counted as lost."""
    from procobsrv.linux.connector_abi import PROC_CN_MCAST_IGNORE, PROC_CN_MCAST_LISTEN
    from tests.fakes.connector import fork, replay_source

    source, replay = replay_source()
    source.open()
    replay.publish([fork(200, 1, cpu=0, seq=10)])
    first = source.fetch_batch()
    source.close()
    source.open()  # meanwhile the kernel numbered 89 messages for others
    replay.publish([fork(201, 1, cpu=0, seq=100)])
    second = source.fetch_batch()
    source.close()
    assert [i.process_id for i in first.items + second.items] == [200, 201]
    assert first.lost == second.lost == 0
    listen, ignore = PROC_CN_MCAST_LISTEN, PROC_CN_MCAST_IGNORE
    assert replay.sent_ops == [listen, ignore, listen, ignore]


#: The raw exit system call (only the calling thread ends), by machine.
SYS_EXIT = {"x86_64": 60, "aarch64": 93}

#: A Python whose main thread (the thread-group leader) ends alone with SYS_exit while a
#: second thread goes on for 0.5 s and then ends the process: {END}.
LEADER_LEAVES_FIRST = """
import ctypes, os, signal, sys, threading, time
def later():
    time.sleep(0.5)
    {END}
threading.Thread(target=later).start()
ctypes.CDLL(None).syscall({SYS_EXIT}, 0)
"""


@pytest.fixture
def connector_collector(connector: None) -> Iterator[Collector]:
    """A running scope on the connector source (whatever source `auto` would pick)."""
    handler = Collector()
    scope = ApplicationScope.get_instance(handler)
    assert scope.start_monitoring(source="connector")
    try:
        yield handler
    finally:
        scope.stop_monitoring()


@pytest.mark.parametrize("run", range(3))
def test_an_exec_by_a_thread_that_is_not_the_leader_ends_nothing(
    connector_collector: Collector, run: int
) -> None:
    """The kernel ends the old leader while a thread's exec takes its pid: no EXITED until
    the program the thread ran ends."""
    collector = connector_collector
    code = (
        "import os, threading, time\n"
        "argv = ['sh', '-c', 'sleep 0.2; exit 5']\n"
        "threading.Thread(target=os.execv, args=('/bin/sh', argv)).start()\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    assert child.wait(timeout=30) == 5
    ended = collector.wait_exit(child.pid)
    assert kinds(collector.of(child.pid)) == [CREATED, EXEC, EXEC, EXITED]
    assert ended.exit_code == 5 and ended.command_line == ["sh", "-c", "sleep 0.2; exit 5"]


@pytest.mark.parametrize(
    ("end", "status"),
    [("os._exit(7)", 7), ("os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL)],
)
def test_a_leader_that_ends_before_its_threads_ends_with_the_process(
    connector_collector: Collector, end: str, status: int
) -> None:
    """The leader's own end is no process exit: one EXITED, when the last thread ends, with
    the process's status."""
    collector = connector_collector
    machine = platform.machine()
    if machine not in SYS_EXIT:
        pytest.skip(f"no SYS_exit number known for {machine}")
    code = LEADER_LEAVES_FIRST.format(END=end, SYS_EXIT=SYS_EXIT[machine])
    child = subprocess.Popen([sys.executable, "-c", code])
    assert child.wait(timeout=30) == status
    collector.wait_exit(child.pid)
    time.sleep(0.2)  # an EXITED too many would be here by now
    ended = collector.of(child.pid, EXITED)
    assert kinds(collector.of(child.pid)) == [CREATED, EXEC, EXITED], ended
    if status > 0:
        assert (ended[0].exit_code, ended[0].signal) == (status, None)
    else:
        assert (ended[0].exit_code, ended[0].signal) == (None, -status)
    assert ended[0].command_line == [sys.executable, "-c", code]


@pytest.mark.usefixtures("connector")
def test_a_held_exit_whose_last_thread_exit_was_lost_is_reported_once_the_group_is_gone() -> None:
    """The leader of a live two-thread process "ends" (a replayed exit): held. The process is
    then killed and its threads' exits never arrive (as if lost in an overflow): a fetch a
    second later finds the group gone in /proc and reports the exit, once."""
    code = (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(30,)).start()\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    status = Path(f"/proc/{child.pid}/status")
    assert wait_until(lambda: "Threads:\t2" in status.read_text(), 10)
    source, replay = replay_source(read_proc=True)
    source.open()
    try:
        exit_union = struct.pack("<6I", child.pid, child.pid, 0, signal.SIGCHLD, 1, 1)
        replay.publish([message(abi.PROC_EVENT_EXIT, exit_union, seq=1)])
        held = source.fetch_batch()
        assert [i for i in held.items if i.process_id == child.pid] == []
        child.kill()
        child.wait()
        time.sleep(RECHECK_S)
        ended = [i for i in source.fetch_batch().items if i.process_id == child.pid]
        assert [i.kind for i in ended] == [EXITED]
        assert ended[0].command_line == [sys.executable, "-c", code]
        assert [i for i in source.fetch_batch().items if i.process_id == child.pid] == []
    finally:
        source.close()


def free_pids(count: int) -> list[int]:
    """Pids no process has now (the replayed processes are as gone as a late read finds them)."""
    highest = int(Path("/proc/sys/kernel/pid_max").read_text())
    free = (p for p in range(highest - 1, 1, -1) if not Path(f"/proc/{p}").exists())
    return [next(free) for _ in range(count)]


@pytest.mark.parametrize("then", ["the thread ends the process", "the thread execs"])
@pytest.mark.usefixtures("connector")
def test_the_threads_of_a_process_seen_forked_are_counted_from_the_events(then: str) -> None:
    """Replayed in the kernel's order, for a process already gone from /proc (as a source
    that reads late finds it): its fork, a thread's, the leader's exit (status 0), then the
    thread's exit_group(7), or its exec. One EXITED with status 7; or none, and the exec."""
    pid, tid = free_pids(2)
    me = os.getpid()
    exit_of = "<6I"  # process_pid, process_tgid, exit_code, exit_signal, parent_pid, parent_tgid
    records = [
        message(abi.PROC_EVENT_FORK, struct.pack("<4I", me, me, pid, pid), seq=1),
        message(abi.PROC_EVENT_FORK, struct.pack("<4I", pid, pid, tid, pid), seq=2),
        message(
            abi.PROC_EVENT_EXIT, struct.pack(exit_of, pid, pid, 0, signal.SIGCHLD, me, me), seq=3
        ),
    ]
    if then == "the thread ends the process":
        thread_exit = struct.pack(exit_of, tid, pid, 7 << 8, 0xFFFFFFFF, 0, 0)
        records.append(message(abi.PROC_EVENT_EXIT, thread_exit, seq=4))
    else:
        records.append(message(abi.PROC_EVENT_EXEC, struct.pack("<2I", pid, pid), seq=4))
    source, replay = replay_source(read_proc=True)
    source.open()
    try:
        replay.publish(records)
        items = [i for i in source.fetch_batch().items if i.process_id == pid]
    finally:
        source.close()
    if then == "the thread ends the process":
        assert [(i.kind, i.exit_code) for i in items] == [(CREATED, None), (EXITED, 7)]
    else:
        assert [i.kind for i in items] == [CREATED, EXEC]
