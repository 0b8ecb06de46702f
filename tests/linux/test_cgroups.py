"""cgroup paths on the eBPF source: sent by the kernel program once per cgroup id, sent again
when that record was dropped, and opened by id (a file handle) when never received."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from procobsrv import EventKind
from procobsrv.linux import EbpfSource, procfs
from procobsrv.linux.cgroups import REMEMBERED, CgroupPaths, open_by_id
from procobsrv.linux.ebpf_abi import PO_CGROUPS_REMEMBERED, PO_MAX_DEPTH, PO_PATH_CAP
from procobsrv.linux.ebpf_decoder import CUT
from tests.fakes.cgroups import own_cgroup
from tests.fakes.ebpf import run_child


@pytest.fixture
def group() -> Iterator[Path]:
    """A new cgroup v2 directory of our own (root only)."""
    with own_cgroup("procobsrv-cg") as path:
        yield path


def in_group(group: Path, argv: list[str]) -> subprocess.Popen[bytes]:
    return run_child(argv, preexec_fn=lambda: (group / "cgroup.procs").write_text("0"))


def test_open_by_id_finds_a_cgroup_by_handle(group: Path) -> None:
    nested = group / "inner"
    nested.mkdir()
    try:
        root = procfs.cgroup2_root()
        assert root is not None
        assert open_by_id(os.stat(nested).st_ino, root) == f"/{group.name}/inner"
        assert open_by_id(os.stat(root).st_ino, root) == "/"
        assert open_by_id(1 << 62, root) is None
    finally:
        nested.rmdir()


def test_paths_not_announced_are_looked_up_once(group: Path) -> None:
    paths = CgroupPaths()
    ino = os.stat(group).st_ino
    assert paths.get(ino) == f"/{group.name}" and paths.looked_up == 1
    assert paths.get(ino) == f"/{group.name}" and paths.looked_up == 1
    paths.add(ino, "/renamed")
    assert paths.get(ino) == "/renamed"


def test_a_missed_id_is_not_looked_up_by_walking_the_hierarchy(
    group: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Among a few thousand cgroups, a miss costs the same few system calls: no directory
    of the hierarchy is listed (on the monitor thread, that walk held the ring's reader)."""
    with nested(group, [f"d{i}" for i in range(2)]):
        for i in range(2000):
            (group / f"n{i}").mkdir()
        try:
            wanted = group / "n1999"
            listed: list[object] = []
            real_scandir = os.scandir
            monkeypatch.setattr(os, "scandir", lambda *a: listed.append(a) or real_scandir(*a))
            monkeypatch.setattr(os, "listdir", lambda *a: listed.append(a) or [])
            paths = CgroupPaths()
            assert paths.get(os.stat(wanted).st_ino) == f"/{group.name}/n1999"
            assert paths.get(os.stat(group / "d0" / "d1").st_ino) == f"/{group.name}/d0/d1"
            assert listed == [] and paths.looked_up == 2
        finally:
            for i in range(2000):
                (group / f"n{i}").rmdir()


def test_the_cache_keeps_the_cgroups_named_most_recently() -> None:
    """Least recently named first out, as in the kernel's LRU map: a busy cgroup (named by
    every event) is not forgotten here while the kernel, remembering it, never re-sends it."""
    paths = CgroupPaths(capacity=3)
    paths.add(1 << 62, "/busy")
    paths.add((1 << 62) + 1, "/idle")
    paths.add((1 << 62) + 2, "/other")
    assert paths.get(1 << 62) == "/busy"
    paths.add((1 << 62) + 3, "/new")  # forgets the least recently named: /idle
    assert paths.get(1 << 62) == "/busy" and paths.looked_up == 0
    assert paths.get((1 << 62) + 1) is None and paths.looked_up == 1  # gone: not re-opened
    assert REMEMBERED > PO_CGROUPS_REMEMBERED


@pytest.mark.kernel
@pytest.mark.usefixtures("ebpf")
def test_a_cgroup_path_is_sent_once_per_id(group: Path) -> None:
    source = EbpfSource(parent_filter=os.getpid(), read_proc=False)
    source.open()
    try:
        pids = [in_group(group, ["/bin/true", str(i)]).pid for i in range(20)]
        time.sleep(0.2)
        items = source.fetch_batch().items
    finally:
        source.close()
    mine = [i for i in items if i.process_id in pids]
    assert len(mine) == 3 * len(pids)
    assert {(i.cgroup, i.cgroup_id) for i in mine if i.kind is not EventKind.CREATED} == {
        (f"/{group.name}", os.stat(group).st_ino)
    }
    # one record per cgroup the children were in (ours at fork, the group's after), no lookup
    assert source.decoder.announced == len({i.cgroup_id for i in mine})
    assert source.decoder.cgroups.looked_up == 0


@pytest.mark.kernel
@pytest.mark.usefixtures("ebpf")
def test_a_dropped_cgroup_record_is_sent_again(group: Path) -> None:
    """The ring (one page) is full when a child first runs in the group: its cgroup record is
    dropped with its events. The next child's events then bring the path again, from the
    kernel (nothing looked up in user space)."""
    source = EbpfSource(parent_filter=os.getpid(), ring_size=4096, read_proc=False)
    source.open()
    try:
        while source.program.drops() == 0:
            run_child(["/bin/true", "fill"])
        first = in_group(group, ["/bin/true", "first"])
        while source.fetch_batch().items:
            pass
        second = in_group(group, ["/bin/true", "second"])
        time.sleep(0.1)
        items = source.fetch_batch().items
    finally:
        source.close()
    assert not [i for i in items if i.process_id == first.pid]  # all dropped with the ring full
    (exec_,) = [i for i in items if i.process_id == second.pid and i.kind is EventKind.EXEC]
    assert exec_.cgroup == f"/{group.name}" and source.decoder.cgroups.looked_up == 0


@contextmanager
def nested(group: Path, names: list[str]) -> Iterator[int]:
    """group/names[0]/names[1]/...: an fd of the deepest directory (by fds: the whole path
    may exceed PATH_MAX). Removed deepest first afterwards."""
    fds = [os.open(group, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for name in names:
            os.mkdir(name, dir_fd=fds[-1])
            fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        yield fds[-1]
    finally:
        for depth in range(len(fds) - 1, 0, -1):
            os.close(fds[depth])
            for _ in range(100):  # the child's exit releases the deepest a moment later
                try:
                    os.rmdir(names[depth - 1], dir_fd=fds[depth - 1])
                    break
                except OSError:
                    time.sleep(0.05)
        os.close(fds[0])


def cgroup_of_a_child_in(where: int) -> str | None:
    """The cgroup path the eBPF source gives the exec of a child run in cgroup fd ``where``."""

    def join() -> None:
        fd = os.open("cgroup.procs", os.O_WRONLY, dir_fd=where)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    source = EbpfSource(parent_filter=os.getpid(), read_proc=False)
    source.open()
    try:
        child = run_child(["/bin/true", "deep"], preexec_fn=join, pass_fds=(where,))
        time.sleep(0.1)
        items = source.fetch_batch().items
    finally:
        source.close()
    (exec_,) = [i for i in items if i.process_id == child.pid and i.kind is EventKind.EXEC]
    return exec_.cgroup


@pytest.mark.kernel
@pytest.mark.usefixtures("ebpf")
def test_a_cgroup_deeper_than_the_walk_lost_its_top(group: Path) -> None:
    """The kernel keeps the deepest PO_MAX_DEPTH components: the mark goes ahead of them."""
    names = [f"c{i}" for i in range(PO_MAX_DEPTH + 6)]
    with nested(group, names) as deepest:
        cgroup = cgroup_of_a_child_in(deepest)
    assert cgroup == CUT + "/" + "/".join(names[-PO_MAX_DEPTH:])


@pytest.mark.kernel
@pytest.mark.usefixtures("ebpf")
def test_a_cgroup_path_longer_than_the_cap_lost_its_tail(group: Path) -> None:
    """A path longer than PO_PATH_CAP keeps its beginning: the mark goes behind it."""
    names = [f"{i:02}" + "x" * 198 for i in range(PO_PATH_CAP // 200 + 4)]
    with nested(group, names) as deepest:
        cgroup = cgroup_of_a_child_in(deepest)
    full = f"/{group.name}/" + "/".join(names)
    assert cgroup is not None and cgroup.endswith("/" + CUT)
    kept = cgroup.removesuffix("/" + CUT)
    assert full.startswith(kept + "/") and len(kept) <= PO_PATH_CAP
    assert len(kept) > PO_PATH_CAP - 201  # all the whole components that fit
