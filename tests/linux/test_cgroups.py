"""cgroup paths on the eBPF source: sent by the kernel program once per cgroup id, sent again
when that record was dropped, and looked up by id in the hierarchy when never received."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from procobsrv import EventKind
from procobsrv.linux import EbpfSource, procfs
from procobsrv.linux.cgroups import CgroupPaths, find_by_id
from tests.fakes.ebpf import run_child


@pytest.fixture
def group() -> Iterator[Path]:
    """A new cgroup v2 directory of our own (root only)."""
    root = procfs.cgroup2_root()
    if root is None or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup v2 hierarchy")
    path = Path(root) / f"procobsrv-cg-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir()
    yield path
    for _ in range(100):  # the children's exits release it a moment later
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.05)


def in_group(group: Path, argv: list[str]) -> subprocess.Popen[bytes]:
    return run_child(argv, preexec_fn=lambda: (group / "cgroup.procs").write_text("0"))


def test_find_by_id_walks_the_hierarchy_by_inode(group: Path) -> None:
    nested = group / "inner"
    nested.mkdir()
    try:
        root = procfs.cgroup2_root()
        assert find_by_id(os.stat(nested).st_ino) == f"/{group.name}/inner"
        assert root is not None and find_by_id(os.stat(root).st_ino) == "/"
        assert find_by_id(1 << 62) is None
    finally:
        nested.rmdir()


def test_paths_not_announced_are_looked_up_once(group: Path) -> None:
    paths = CgroupPaths()
    ino = os.stat(group).st_ino
    assert paths.get(ino) == f"/{group.name}" and paths.looked_up == 1
    assert paths.get(ino) == f"/{group.name}" and paths.looked_up == 1
    paths.add(ino, "/renamed")
    assert paths.get(ino) == "/renamed"


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
