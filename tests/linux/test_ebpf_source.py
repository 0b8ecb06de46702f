"""The eBPF source on the real kernel: real children, and what their events say."""

from __future__ import annotations

import os
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from procobsrv import ApplicationScope, EventKind
from procobsrv.linux import EbpfSource, procfs
from procobsrv.linux.ebpf_abi import PO_ARGS_CAP
from tests.fakes.availability import require_connector, require_ebpf, require_tool
from tests.fakes.collector import Collector
from tests.fakes.ebpf import AlreadyOpen, ebpf_monitoring, events, run_child
from tests.fakes.gauges import wait_until

pytestmark = pytest.mark.kernel
CREATED, EXEC, EXITED = EventKind.CREATED, EventKind.EXEC, EventKind.EXITED
TRUE = os.path.realpath("/bin/true")
SH = os.path.realpath("/bin/sh")


@pytest.mark.usefixtures("ebpf")
def test_default_scope_gets_exact_argv_and_image_of_every_short_process() -> None:
    """A few hundred concurrent short processes, each with its own argv, through
    ApplicationScope with no option set (auto picks eBPF as root)."""
    handler = Collector()
    scope = ApplicationScope.get_instance(handler)
    assert scope.start_monitoring()
    try:
        assert isinstance(scope.source, EbpfSource)
        tag = f"TAG-{os.getpid()}-{time.monotonic_ns()}"
        argvs: dict[int, list[str]] = {}
        lock = threading.Lock()

        def spawner(k: int) -> None:
            for i in range(100):
                argv = ["/bin/true", f"{tag}-{k}-{i}", "x y", ""]
                pid = os.posix_spawn(argv[0], argv, os.environ)
                with lock:
                    argvs[pid] = argv
                os.waitpid(pid, 0)

        threads = [threading.Thread(target=spawner, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(argvs) == 300
        for pid in argvs:
            handler.wait_exit(pid)
    finally:
        scope.stop_monitoring()
    assert handler.lost == 0
    for pid, argv in argvs.items():
        kinds = [i.kind for i in handler.of(pid)]
        assert kinds == [CREATED, EXEC, EXITED], (pid, kinds)
        for item in handler.of(pid)[1:]:
            assert item.command_line == argv and item.image == TRUE, item
            assert item.command_line_size == sum(len(a) + 1 for a in argv)
            assert item.start_ns == handler.of(pid)[0].start_ns > 0


def test_relative_path_symlink_and_cwd(tmp_path: Path) -> None:
    link = tmp_path / "alias"
    link.symlink_to("/bin/true")
    with ebpf_monitoring() as handler:
        relative = run_child(["./true", "rel"], cwd="/usr/bin", executable="./true")
        linked = run_child([str(link), "sym"], cwd=tmp_path)
        (rel,) = events(handler, relative.pid, EXEC)
        (sym,) = events(handler, linked.pid, EXEC)
    assert rel.image == "/usr/bin/true" and rel.command_line == ["./true", "rel"]
    assert rel.cwd == "/usr/bin" and rel.script is None
    assert sym.image == TRUE and sym.command_line == [str(link), "sym"]
    assert sym.cwd == os.path.realpath(tmp_path)
    assert rel.comm == "true" and sym.comm == "alias"


def test_script_names_the_script_and_the_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o755)
    with ebpf_monitoring() as handler:
        child = run_child(["./job.sh", "arg"], cwd=tmp_path, executable="./job.sh")
        (exec_,) = events(handler, child.pid, EXEC)
        (exit_,) = handler.of(child.pid, EXITED)
    assert exec_.image == SH  # what the kernel runs, as /proc/PID/exe would say
    assert exec_.script == str(script.resolve())
    assert exec_.command_line == ["/bin/sh", "./job.sh", "arg"]  # as the interpreter got it
    assert exit_.exit_code == 3 and exit_.script == exec_.script and exit_.image == SH


def test_long_argv_is_truncated_with_flag_and_full_size() -> None:
    argv = ["/bin/true", *(f"argument-{i:05d}" for i in range(600))]
    size = sum(len(a) + 1 for a in argv)
    assert size > PO_ARGS_CAP
    with ebpf_monitoring() as handler:
        child = run_child(argv)
        (item,) = events(handler, child.pid, EXEC)
    assert item.command_line_truncated is True and item.command_line_size == size
    assert item.command_line is not None
    joined = "\0".join(item.command_line)
    assert len(joined) <= PO_ARGS_CAP and "\0".join(argv).startswith(joined)
    assert len(item.command_line) > 200


THREADS = r"""
import os, threading, time
def spin():
    time.sleep(5)
threads = [threading.Thread(target=spin, daemon=True) for _ in range(3)]
for t in threads:
    t.start()
def leave():
    time.sleep(0.05)
    os._exit(7)   # from a thread that is not the leader, while the others still run
threading.Thread(target=leave).start()
time.sleep(5)
"""


def test_threads_are_not_processes_and_a_multithreaded_exit_is_reported_once() -> None:
    with ebpf_monitoring() as handler:
        child = run_child([sys.executable, "-c", THREADS])
        handler.wait_exit(child.pid)
        time.sleep(0.1)
        mine = [i for i in handler.items if child.pid in (i.process_id, i.parent_id)]
    assert child.returncode == 7
    assert [i.kind for i in mine] == [CREATED, EXEC, EXITED]  # no thread forks, one exit
    assert mine[2].exit_code == 7 and mine[2].signal is None
    assert mine[2].image == os.path.realpath(sys.executable)


#: Forks a sibling (clone(CLONE_PARENT): its parent is ours) that runs this program on,
#: prints its pid and exits; the sibling ends a moment later without an exec.
MIDDLE = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
	long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
	if (pid < 0)
		return 1;
	if (pid == 0) {
		usleep(100000);
		_exit(0);
	}
	printf("%ld\n", pid);
	return 0;
}
"""


def test_a_clone_parent_child_runs_its_creators_program(tmp_path: Path) -> None:
    """A child made with clone(CLONE_PARENT) is our child (ppid) but runs `middle`, the
    program that made it: its created event names middle, not us (the real parent)."""
    gcc = require_tool("gcc")
    source = tmp_path / "middle.c"
    source.write_text(MIDDLE)
    middle = str(tmp_path / "middle")
    subprocess.run([gcc, "-O", "-o", middle, str(source)], check=True)
    with ebpf_monitoring() as handler:
        run = subprocess.run([middle], stdout=subprocess.PIPE, check=True)
        sibling = int(run.stdout)
        os.waitpid(sibling, 0)  # our child: the kernel made us its parent
        handler.wait_exit(sibling)
        (created,) = handler.of(sibling, CREATED)
        (exited,) = handler.of(sibling, EXITED)
    assert created.parent_id == os.getpid()
    assert created.image == exited.image == middle
    assert created.command_line == [middle]


def test_kill_signal_and_core_flag_match_the_wait_status(tmp_path: Path) -> None:
    def allow_core() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    with ebpf_monitoring() as handler:
        killed = subprocess.Popen(["sh", "-c", "kill -KILL $$"])
        _, killed_status = os.waitpid(killed.pid, 0)
        cored = subprocess.Popen(["sh", "-c", "kill -SEGV $$"], cwd=tmp_path, preexec_fn=allow_core)
        _, cored_status = os.waitpid(cored.pid, 0)
        k = handler.wait_exit(killed.pid)
        c = handler.wait_exit(cored.pid)
    assert (k.exit_code, k.signal, k.core_dumped) == (None, signal.SIGKILL, False)
    assert os.WIFSIGNALED(cored_status) and c.signal == signal.SIGSEGV
    assert c.core_dumped == os.WCOREDUMP(cored_status)
    assert os.WTERMSIG(killed_status) == signal.SIGKILL


def test_real_and_effective_uid() -> None:
    with ebpf_monitoring() as handler:
        nobody = run_child(["/bin/true"], preexec_fn=lambda: os.setuid(65534))
        mixed = run_child(["/bin/true"], preexec_fn=lambda: os.setresuid(0, 65534, 0))
        (n,) = events(handler, nobody.pid, EXEC)
        (m,) = events(handler, mixed.pid, EXEC)
    assert (n.uid, n.euid) == (65534, 65534)
    assert (m.uid, m.euid) == (0, 65534)


def test_cgroup_id_and_path_are_those_of_proc_pid_cgroup() -> None:
    root = procfs.cgroup2_root()
    assert root is not None, "no cgroup v2 hierarchy mounted"
    group = Path(root) / f"procobsrv-test-{os.getpid()}"
    group.mkdir()
    group_id = os.stat(group).st_ino
    try:

        def enter() -> None:
            (group / "cgroup.procs").write_text("0")

        with ebpf_monitoring() as handler:
            child = subprocess.Popen(["/bin/sleep", "5"], preexec_fn=enter)
            assert handler.wait_for(lambda: bool(handler.of(child.pid, EXEC)))
            in_proc = procfs.read_cgroup(child.pid)
            child.kill()
            child.wait()
            exit_ = handler.wait_exit(child.pid)
        (exec_,) = handler.of(child.pid, EXEC)
    finally:
        group.rmdir()
    assert in_proc == f"/{group.name}"
    assert exec_.cgroup == exit_.cgroup == in_proc
    assert exec_.cgroup_id == exit_.cgroup_id == group_id


@pytest.mark.usefixtures("ebpf")
def test_process_started_before_monitoring_is_named_at_its_exit() -> None:
    child = subprocess.Popen(["/bin/sleep", "30.25"])
    try:
        time.sleep(0.05)
        approx = procfs.read_start_ns(child.pid)
        with ebpf_monitoring() as handler:
            child.kill()
            child.wait()
            item = handler.wait_exit(child.pid)
    finally:
        child.kill()
    assert item.image == "/usr/bin/sleep" and item.command_line == ["/bin/sleep", "30.25"]
    assert approx is not None and abs(item.start_ns - approx) <= procfs.START_NS_TOLERANCE
    assert item.signal == signal.SIGKILL


@pytest.mark.usefixtures("ebpf")
def test_full_ring_buffer_counts_every_dropped_event_exactly() -> None:
    """The consumer stalls while 400 children run: what it then receives plus what
    on_events_lost reports is exactly 3 events per child (the filter keeps other
    processes of this machine out of the count)."""
    source = EbpfSource(parent_filter=os.getpid(), ring_size=64 << 10, read_proc=False)
    source.open()
    try:
        pids = [run_child(["/bin/true", f"fill-{i}"]).pid for i in range(400)]
    except BaseException:
        source.close()
        raise
    handler = Collector()
    scope = ApplicationScope.get_instance(handler)
    assert scope.start_monitoring(source=AlreadyOpen(source))
    try:
        assert handler.wait_for(lambda: len(handler.items) + handler.lost >= 3 * len(pids))
        time.sleep(0.1)
    finally:
        scope.stop_monitoring()
    received = [i for i in handler.items if i.process_id in set(pids)]
    assert len(received) == len(handler.items)  # the filter let nothing else in
    assert 0 < handler.lost < 3 * len(pids)  # it did overflow, and some got through
    assert len(received) + handler.lost == 3 * len(pids)


@pytest.mark.parametrize("name", ["ebpf", "connector"])
def test_process_tree_knows_the_processes_running_at_start(name: str) -> None:
    from procobsrv import ProcessTree
    from procobsrv.linux import ConnectorSource

    require_ebpf() if name == "ebpf" else require_connector()
    child = subprocess.Popen(["/bin/sleep", "30.5"])
    try:
        time.sleep(0.05)
        tree = ProcessTree()
        scope = ApplicationScope.get_instance(tree)
        source = EbpfSource() if name == "ebpf" else ConnectorSource()
        assert scope.start_monitoring(source=source)
        try:
            tree.seed(source.running)
            node = tree.find(child.pid)
            assert node is not None and node.image == "/usr/bin/sleep"
            assert node.command_line == ("/bin/sleep", "30.5")
            me = tree.find(os.getpid())
            assert me is not None and node.parent == me.key
            child.kill()
            child.wait()
            wait_until(lambda: tree.find(child.pid) is None, 10)
            (gone,) = [n for n in tree.exited if n.pid == child.pid]
            assert gone.signal == signal.SIGKILL and gone.image == "/usr/bin/sleep"
        finally:
            scope.stop_monitoring()
    finally:
        child.kill()


@pytest.mark.usefixtures("ebpf")
def test_records_the_program_does_not_announce_are_still_delivered() -> None:
    """A consumer that does not fetch (as ProcessThreadMonitor lingering in a storm) leaves
    the fork unconsumed, so the exec and exit land in a non-empty buffer and wake nobody:
    the fd must still poll readable and one fetch must bring all three (the filter keeps
    every other process's events out)."""
    source = EbpfSource(parent_filter=os.getpid(), read_proc=False)
    source.open()
    try:
        child = run_child(["/bin/true", "unannounced"])
        items = []
        deadline = time.monotonic() + 5
        while len(items) < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([source.wait_handle], [], [], 1.0)
            if ready:
                items += [i for i in source.fetch_batch().items if i.process_id == child.pid]
    finally:
        source.close()
    assert [i.kind for i in items] == [CREATED, EXEC, EXITED]
