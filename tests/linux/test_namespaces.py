"""Namespaces and containers on real children: processes in pid, mount and user namespaces
made by `unshare`, and in cgroups made by hand under /sys/fs/cgroup and named as each
container engine names them. Each source (eBPF, connector) must report what /proc says of
the live process: its pid in its own pid namespace, its parent's there, and the inodes of
its pid and mount namespaces; and the container named by its cgroup."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from procobsrv import EventKind, QueuedItem
from procobsrv.containers import PATTERNS, container_of
from procobsrv.linux import ConnectorSource, EbpfSource
from procobsrv.linux.namespaces import ns_inode, read_namespaces, read_ns_tgids
from procobsrv.platform import KernelSource
from tests.fakes.availability import require_connector, require_ebpf, require_tool
from tests.fakes.cgroups import own_cgroup
from tests.fakes.watch import PROCOBSRV, validate_lines, watching

pytestmark = pytest.mark.kernel

CREATED, EXEC, EXITED = EventKind.CREATED, EventKind.EXEC, EventKind.EXITED

#: unshare prefixes: the child runs in new namespaces of these kinds.
UNSHARED = {
    "pid+mount": ["--pid", "--fork", "--mount"],
    "user+pid+mount": ["--user", "--map-root-user", "--pid", "--fork", "--mount"],
}


def open_source(name: str) -> KernelSource:
    """The real source, opened; it sees every process of the host."""
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces of other processes, cgroups, both sources)")
    source: KernelSource
    if name == "ebpf":
        require_ebpf()
        source = EbpfSource(read_proc=False)
    else:
        require_connector()
        source = ConnectorSource()
    source.open()
    return source


def collect(
    source: KernelSource, items: list[QueuedItem], done: Callable[[], bool], timeout: float = 10
) -> None:
    """Fetch batches into ``items`` until ``done()`` (or the timeout: the test's asserts say
    what was missing)."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        items.extend(source.fetch_batch().items)
        time.sleep(0.02)


def with_argv(items: list[QueuedItem], kind: EventKind, argv: list[str]) -> list[QueuedItem]:
    return [i for i in items if i.kind is kind and i.command_line == argv]


def of(items: list[QueuedItem], pid: int, kind: EventKind) -> list[QueuedItem]:
    return [i for i in items if i.process_id == pid and i.kind is kind]


def proc_view(pid: int) -> tuple[int, int, int]:
    """(pid in its own pid namespace, pid namespace inode, mount namespace inode), as the
    host's /proc says of a live process."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^NStgid:\s*(.*)$", status, re.MULTILINE)
    assert found is not None, status
    ns_pid = int(found.group(1).split()[-1])
    return ns_pid, os.stat(f"/proc/{pid}/ns/pid").st_ino, os.stat(f"/proc/{pid}/ns/mnt").st_ino


def namespaced(item: QueuedItem) -> tuple[int | None, int | None, int | None, int | None]:
    return item.ns_pid, item.ns_ppid, item.pid_ns, item.mnt_ns


@contextmanager
def session(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` in a session of its own, whose processes are all killed at the end."""
    child = subprocess.Popen(argv, start_new_session=True)
    try:
        yield child
    finally:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()


@pytest.mark.parametrize("unshared", list(UNSHARED))
@pytest.mark.parametrize("source_name", ["ebpf", "connector"])
def test_a_process_in_new_namespaces_is_seen_through_them(source_name: str, unshared: str) -> None:
    """`unshare ... sh -c 'sleep T & wait'`: sh is pid 1 of a new pid namespace (its parent,
    unshare, is outside it: ns_ppid 0) and sleep its pid 2 (ns_ppid 1); the namespaces'
    inodes are those /proc names, not ours. Fork, exec and exit say the same."""
    require_tool("unshare")
    sleep_argv = ["sleep", f"30.{os.getpid()}{len(unshared)}"]
    script = f"{' '.join(sleep_argv)} & wait"
    sh_argv = ["sh", "-c", script]
    source = open_source(source_name)
    items: list[QueuedItem] = []
    try:
        with session(["unshare", *UNSHARED[unshared], "--", *sh_argv]) as unshare:
            both = (sh_argv, sleep_argv)
            collect(source, items, lambda: all(with_argv(items, EXEC, a) for a in both))
            (sh_exec,) = with_argv(items, EXEC, sh_argv)
            (sleep_exec,) = with_argv(items, EXEC, sleep_argv)
            sh, sleep = sh_exec.process_id, sleep_exec.process_id
            sh_ns_pid, pid_ns, mnt_ns = proc_view(sh)
            sleep_ns_pid, sleep_pid_ns, sleep_mnt_ns = proc_view(sleep)
            own_pid_ns = os.stat("/proc/self/ns/pid").st_ino
            own_mnt_ns = os.stat("/proc/self/ns/mnt").st_ino
            os.killpg(unshare.pid, signal.SIGKILL)
            collect(source, items, lambda: bool(of(items, sleep, EXITED) and of(items, sh, EXITED)))
    finally:
        source.close()
    # what /proc says: new namespaces, sh their first process, sleep its child
    assert (sh_ns_pid, sleep_ns_pid) == (1, 2)
    assert pid_ns == sleep_pid_ns != own_pid_ns and mnt_ns == sleep_mnt_ns != own_mnt_ns
    assert sh != 1 and sleep != 2  # the host's pids are others
    # what each event of each process says
    expected = {sh: (1, 0, pid_ns, mnt_ns), sleep: (2, 1, pid_ns, mnt_ns)}
    for pid, view in expected.items():
        for kind in (CREATED, EXEC, EXITED):
            events = of(items, pid, kind)
            assert events, f"no {kind.value} event for {pid}: {of(items, pid, EXEC)}"
            assert [namespaced(e) for e in events] == [view] * len(events), (kind, events)
    assert sleep_exec.parent_id == sh  # next to the host's pids
    assert sleep_exec.container is None


@pytest.mark.parametrize("depth", [2, 5])
@pytest.mark.parametrize("source_name", ["ebpf", "connector"])
def test_a_pid_namespace_inside_another_gives_the_innermost_pid(
    source_name: str, depth: int
) -> None:
    """Pid namespaces nested ``depth`` deep (NStgid has depth + 1 numbers): the pids are the
    innermost's. 5 is beyond the depths the kernel program reads directly (0-3)."""
    require_tool("unshare")
    sleep_argv = ["sleep", f"30.{os.getpid()}7{depth}"]
    sh_argv = ["sh", "-c", f"{' '.join(sleep_argv)} & wait"]
    nest = ["unshare", "--pid", "--fork", "--"] * depth
    source = open_source(source_name)
    items: list[QueuedItem] = []
    try:
        with session([*nest, *sh_argv]):
            collect(source, items, lambda: bool(with_argv(items, EXEC, sleep_argv)))
            (sleep_exec,) = with_argv(items, EXEC, sleep_argv)
            sleep = sleep_exec.process_id
            ns_pid, pid_ns, mnt_ns = proc_view(sleep)
            levels = len(read_ns_tgids(sleep))
    finally:
        source.close()
    assert levels == depth + 1 and ns_pid == 2
    assert namespaced(sleep_exec) == (2, 1, pid_ns, mnt_ns)


def test_the_connector_reads_namespaces_from_proc() -> None:
    """namespaces.py alone: the readlink inodes are stat's; a process of ours is in /proc's
    namespace (its own pids); one that is gone gives nothing."""
    me = os.getpid()
    assert ns_inode(me, "pid") == os.stat(f"/proc/{me}/ns/pid").st_ino
    assert ns_inode(me, "mnt") == os.stat(f"/proc/{me}/ns/mnt").st_ino
    view = read_namespaces(me, os.getppid())
    assert (view.ns_pid, view.ns_ppid) == (me, os.getppid())
    child = subprocess.Popen(["true"])
    child.wait()
    gone = read_namespaces(child.pid, me)
    assert (gone.ns_pid, gone.ns_ppid, gone.pid_ns, gone.mnt_ns) == (None, None, None, None)


def test_the_connector_reads_no_link_that_status_or_the_parent_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """About 8 us per readlink of /proc/PID/ns: an exec in /proc's pid namespace (NStgid has
    one number) reads only the mount link; a fork in its parent's pid namespace only the pid
    link, and takes the parent's mount namespace."""
    me, parent = os.getpid(), os.getppid()
    links: list[str] = []
    readlink = os.readlink
    monkeypatch.setattr(os, "readlink", lambda path: links.append(path) or readlink(path))
    read_namespaces(parent, 1)  # warms the cached /proc/self/ns/pid
    links.clear()
    own = read_ns_tgids(me)
    exec_view = read_namespaces(me, parent, own)
    assert links == [f"/proc/{me}/ns/mnt"]
    links.clear()
    fork_view = read_namespaces(me, parent, None, exec_view, mount_of_parent=True)
    assert links == [f"/proc/{me}/ns/pid"]
    assert fork_view == exec_view and exec_view.mnt_ns == os.stat("/proc/self/ns/mnt").st_ino


# -- containers: cgroups named as the engines name them -----------------------------------


@pytest.fixture
def group() -> Iterator[Path]:
    with own_cgroup("procobsrv-ns") as path:
        yield path


def run_in(cgroup: Path, argv: list[str]) -> subprocess.Popen[bytes]:
    """``argv`` run in ``cgroup`` (joined before exec)."""
    return subprocess.Popen(argv, preexec_fn=lambda: (cgroup / "cgroup.procs").write_text("0"))


@pytest.mark.parametrize("source_name", ["ebpf", "connector"])
def test_each_engines_cgroup_names_the_container(source_name: str, group: Path) -> None:
    """One child per pattern of containers.PATTERNS, in a cgroup made by hand with the
    pattern's sample path (under our own group): its exec names the container."""
    wanted: dict[int, str] = {}  # pid -> the sample path of its cgroup
    children: list[subprocess.Popen[bytes]] = []
    source = open_source(source_name)
    items: list[QueuedItem] = []
    try:
        for n, pattern in enumerate(PATTERNS):
            cgroup = group / pattern.sample.lstrip("/")
            cgroup.mkdir(parents=True)
            child = run_in(cgroup, ["sleep", f"30.{os.getpid()}{n}"])
            children.append(child)
            wanted[child.pid] = pattern.sample
        collect(source, items, lambda: all(of(items, pid, EXEC) for pid in wanted))
    finally:
        for child in children:
            child.kill()
            child.wait()
        source.close()
    for pid, sample in wanted.items():
        (exec_,) = of(items, pid, EXEC)
        assert exec_.cgroup == f"/{group.name}{sample}"
        assert exec_.container is not None and exec_.container == container_of(sample)


def test_watch_shows_only_the_container_named(group: Path) -> None:
    """`procobsrv watch --json --container PREFIX`: the lines are the processes of that
    container (a docker scope made by hand), not those of another container or the host's;
    each line says the container."""
    first, second = "a1" * 32, "b2" * 32
    scopes = {}
    for ident in (first, second):
        scopes[ident] = group / "system.slice" / f"docker-{ident}.scope"
        scopes[ident].mkdir(parents=True)
    with watching("--json", "--container", first[:12]) as watch:
        pids = {}
        for ident, scope in scopes.items():
            child = run_in(scope, ["sh", "-c", "true", ident])
            child.wait()
            pids[ident] = child.pid
        host = subprocess.Popen(["sh", "-c", "true", "host"])
        host.wait()
        time.sleep(0.3)
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=30)
    records = validate_lines(out.splitlines())
    assert records and {r["pid"] for r in records} == {pids[first]}, records
    assert {(r["kind"], r["container_id"], r["container_runtime"]) for r in records} == {
        ("exec", first, "docker"),
        ("exited", first, "docker"),
    }
    assert "events matched" in err


def test_ebpf_run_in_its_own_pid_namespace_still_sees_the_hosts_processes() -> None:
    """procobsrv as in a privileged container without the host's pid namespace: `unshare
    --pid --fork --mount-proc` (its own /proc). The kernel program is global: a host
    process's events arrive, with the host's pids."""
    require_tool("unshare")
    open_source("ebpf").close()  # skips where the program cannot load
    inside = ["unshare", "--pid", "--fork", "--mount-proc", *PROCOBSRV]
    # --duration, not SIGINT: unshare --fork ignores SIGINT and SIGTERM while it waits
    with watching("--json", "--source", "ebpf", "--duration", "2", program=inside) as watch:
        marker = f"host-{os.getpid()}"
        host = subprocess.Popen(["sh", "-c", "true", marker])
        host.wait()
        out, _ = watch.communicate(timeout=30)
    records = [r for r in validate_lines(out.splitlines()) if r["pid"] == host.pid]
    assert {r["kind"] for r in records} >= {"exec", "exited"}, records
    ran = [r for r in records if r["kind"] != "created"]  # a fork runs its parent's program
    assert all(r["command_line"] == ["sh", "-c", "true", marker] for r in ran)
    assert all(r["ns_pid"] == host.pid for r in records)  # the host's namespace: its own pid
