"""Loading and unloading the eBPF program, over and over and by a killed process: nothing
stays in the kernel nor in this process.

Ownership is read from /proc/PID/fdinfo (the ids of the programs, links, maps and BTF that
a process holds), and presence from ``bpftool ... show -j`` (what the kernel has loaded): the
ids are this process's own, so helpers that load the same program meanwhile do not count.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from procobsrv.linux import EbpfSource
from tests.fakes.availability import require_tool

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
CYCLES = int(os.environ.get("PROCOBSRV_EBPF_CYCLES", "1000"))
KINDS = {"prog": "prog_id", "link": "link_id", "map": "map_id", "btf": "btf_id"}


def held(pid: int | str = "self") -> dict[str, set[int]]:
    """The BPF objects a process holds open, by kind: {"prog": {ids}, ...}."""
    out: dict[str, set[int]] = {k: set() for k in KINDS}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if not target.startswith("anon_inode:b"):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        except OSError:
            continue
        for kind, key in KINDS.items():
            if key in info and (kind != "prog" or "link_id" not in info):
                out[kind].add(int(info[key]))
    return out


def loaded(kind: str) -> set[int]:
    """The ids of what the kernel has loaded now."""
    bpftool = require_tool("bpftool")
    run = subprocess.run([bpftool, kind, "show", "-j"], capture_output=True, text=True, check=True)
    return {int(entry["id"]) for entry in json.loads(run.stdout or "[]")}


def still_loaded(ids: dict[str, set[int]], timeout: float = 5.0) -> dict[str, set[int]]:
    """Which of these ids the kernel still has once ``timeout`` passed (it frees programs and
    maps after an RCU grace period, not at the close itself)."""
    deadline = time.monotonic() + timeout
    while True:
        left = {k: ids[k] & loaded(k) for k in ("prog", "link", "map")}
        if not any(left.values()) or time.monotonic() > deadline:
            return {k: v for k, v in left.items() if v}
        time.sleep(0.05)


def rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.usefixtures("ebpf")
def test_open_holds_programs_links_and_maps_and_close_releases_them() -> None:
    before = held()
    source = EbpfSource(read_proc=False)
    source.open()
    during = held()
    source.close()
    source.close()  # safe twice
    assert len(during["prog"] - before["prog"]) == 3
    assert len(during["link"] - before["link"]) == 3
    assert len(during["map"] - before["map"]) >= 4  # events, drops, settings, heap (+ .bss)
    assert held() == before
    assert still_loaded({k: during[k] - before[k] for k in KINDS}) == {}


@pytest.mark.slow
@pytest.mark.usefixtures("ebpf")
def test_many_start_stop_cycles_leave_nothing_behind() -> None:
    before = held()
    fds_before = len(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()
    seen: dict[str, set[int]] = {k: set() for k in KINDS}
    rss = 0
    for cycle in range(CYCLES):
        source = EbpfSource(ring_size=1 << 16, read_proc=False)
        source.open()
        if cycle % 100 == 0:
            for kind, ids in held().items():
                seen[kind] |= ids
        source.close()
        if cycle == CYCLES // 10:
            rss = rss_kib()  # after warm-up: libbpf and ctypes caches are filled
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert threading.active_count() == threads_before
    assert rss_kib() - rss < 8 * 1024, "RSS grew by more than 8 MiB"
    assert held() == before
    assert seen["prog"] and seen["link"] and seen["map"]
    assert still_loaded({k: seen[k] - before[k] for k in KINDS}) == {}


HOLDER = r"""
import sys, time
from procobsrv.linux import EbpfSource
source = EbpfSource(read_proc=False)
source.open()
print("open", flush=True)
time.sleep(60)
"""


@pytest.mark.usefixtures("ebpf")
def test_nothing_stays_attached_after_the_monitoring_process_is_killed() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "open\n"
        his = held(child.pid)
        assert len(his["prog"]) == 3 and len(his["link"]) == 3
        assert his["link"] <= loaded("link")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert still_loaded(his) == {}
