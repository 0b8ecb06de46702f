"""CI smoke test of the benchmark's command-line-and-image completeness column: short storms
with a unique argv per process through each Linux source (and execsnoop, whose output the
benchmark parses), and the scoring itself on known input."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from benchmarks.harness import (
    BpfStats,
    Contender,
    Execsnoop,
    Forkstat,
    Observed,
    Storm,
    run_one,
    score,
)

from tests.fakes.availability import require_tool, unavailable

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(60)]

TRUE = ["/bin/true", "TAG-7-0"]


def bpf_stats_setting() -> str:
    with open(BpfStats.SYSCTL) as f:
        return f.read().strip()


@pytest.mark.parametrize("contender", ["procobsrv-ebpf", "procobsrv-ebpf-watch"])
@pytest.mark.usefixtures("ebpf")
def test_ebpf_source_reports_every_exact_argv_and_image(contender: str) -> None:
    """Through ApplicationScope(source="ebpf") and `procobsrv watch --source ebpf`."""
    require_tool("bpftool")
    before = bpf_stats_setting()
    result = run_one(contender, 2, 400, "mixed")
    assert result.execed == 300  # a quarter of the mixed storm forks without exec
    assert result.exact == {"argv": 100.0, "image": 100.0}
    assert result.completeness == {"fork": 100.0, "exec": 100.0, "exit": 100.0}
    assert (result.lost, result.wrong_exit_status) == (0, 0)
    if contender == "procobsrv-ebpf":  # watch's output has no handler timestamp
        assert result.latency_ms["n"] == sum(result.captured.values())  # the storm's only
    # bpf_stats saw the programs run during the storm (each hook at least once per process)
    # and the sysctl is back to what it was.
    hooks = {h: v for h, v in result.kernel_ns.items() if h != "all"}
    assert len(hooks) >= 3 and all(v["runs"] >= 300 for v in hooks.values()), result.kernel_ns
    assert all(v["ns_per_run"] > 0 for v in hooks.values())
    assert bpf_stats_setting() == before


@pytest.mark.usefixtures("connector")
def test_connector_source_is_scored_per_process() -> None:
    """Slow enough (one process per 20 ms) that /proc is mostly read in time: the column
    must show it; 0 % would mean the scoring no longer matches the listener's output."""
    result = run_one("procobsrv-api", 1, 50, "spawn", 0.02)
    assert result.execed == 50
    assert result.exact["argv"] is not None and result.exact["argv"] > 0
    assert result.exact["image"] is not None and result.exact["image"] > 0
    assert result.latency_ms["n"] == sum(result.captured.values())  # the storm's events only


def test_execsnoop_output_is_parsed() -> None:
    """execsnoop reads argv in the kernel at execve: every process of a small storm."""
    require_tool("execsnoop")
    if os.geteuid() != 0:
        unavailable("execsnoop needs root")
    result = run_one("execsnoop", 2, 200)
    assert result.completeness == {"fork": None, "exec": 100.0, "exit": None}
    assert result.exact == {"argv": 100.0, "image": None}  # it prints no absolute image


def test_scoring_needs_the_exact_argv_and_image_of_that_pid() -> None:
    storm = Storm(1, 4, "mixed", 0, 1)
    storm.procs = [
        (100, 0, "spawn", TRUE, "/usr/bin/true"),
        (101, 0, "spawn", ["/bin/true", "TAG-7-1"], "/usr/bin/true"),
        (102, 0, "spawn", ["/bin/true", "TAG-7-2"], "/usr/bin/true"),
        (103, 7 << 8, "fork", [], ""),  # no exec: not counted
    ]
    obs = Observed(counts=Counter())
    obs.saw(100, TRUE, "/usr/bin/true")  # exact
    obs.saw(101, ["/usr/bin/python3", "-m", "benchmarks.spawner"], "/usr/bin/python3")  # parent's
    obs.saw(101, ["/bin/true", "TAG-7-1"], None)  # argv, but no image
    obs.saw(102, TRUE, "/bin/true")  # another process's argv; the path as given, not the image
    result = score("x", storm, obs)
    assert result.execed == 3
    assert result.exact == {"argv": pytest.approx(200 / 3), "image": pytest.approx(100 / 3)}
    no_images = score("x", storm, Observed(reports=("argv",)))
    assert no_images.exact == {"argv": 0.0, "image": None}


def parse(kind: type[Contender], tmp_path: Path, output: str) -> Observed:
    """What the contender's scoring reads from this output (the tool is not run)."""
    contender = kind.__new__(kind)
    contender.out = str(tmp_path / kind.name)
    Path(contender.out).write_text(output)
    return contender.observed()


def test_text_contenders_output_is_split_into_argv(tmp_path: Path) -> None:
    """forkstat and execsnoop print argv space-separated; execsnoop marks a cut with ' ...'."""
    obs = parse(
        Forkstat,
        tmp_path,
        "Time     Event   PID Info   Duration Process\n"
        "20:20:40 fork   6881 parent          bash /dev/fd/3 \n"
        "20:20:40 fork   6895 child           bash /dev/fd/3 \n"
        "20:20:40 exec   6895                 /bin/true TAG-a-1 \n"
        "20:20:40 exit   6895      0   0.002s /bin/true TAG-a-1 \n",
    )
    assert obs.counts == Counter({(6895, "fork"): 1, (6895, "exec"): 1, (6895, "exit"): 1})
    assert obs.command_lines[6895] == {("/bin/true", "TAG-a-1")}
    assert obs.exits[6895] == (0, None)
    obs = parse(
        Execsnoop,
        tmp_path,
        "PCOMM            PID    PPID   RET ARGS\n"
        "true             6659   6650     0 /bin/true TAG-a-1 \n"
        "true             6663   6661     0 /bin/true 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 "
        "16 17 18 19  ...\n"
        "nonexist         6670   6650    -2 ./nonexist \n"
        "Lost 3 events on CPU #1!\n",
    )
    assert obs.counts == Counter({(6659, "exec"): 1, (6663, "exec"): 1})
    assert obs.command_lines[6659] == {("/bin/true", "TAG-a-1")}
    assert obs.command_lines[6663] == {("/bin/true", *map(str, range(1, 20)), "...")}
    assert obs.lost == 3
