"""CI smoke test of ``python -m benchmarks.kernel_cost``: a short storm per tree (this one
against itself, and this one on the older kernels' exit path), every hook measured, the
figures written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.harness import ROOT

from benchmarks import kernel_cost
from tests.fakes.availability import require_tool

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120), pytest.mark.usefixtures("ebpf")]


@pytest.mark.parametrize("consumer", ["none", "listener"])
def test_each_hook_has_a_cost_per_call_for_both_trees(tmp_path: Path, consumer: str) -> None:
    require_tool("bpftool")
    out = tmp_path / "cost.json"
    args = ["--other", str(ROOT), "--older-exit", "--reps", "1", "--total", "200"]
    kernel_cost.main([*args, "--consumer", consumer, "--json", str(out)])
    medians = json.loads(out.read_text())["medians"]
    for tree in ("this", "this-older", "other"):
        assert set(medians[tree]) == {"on_fork", "on_exec", "on_exit", "all"}
        assert all(0 < ns < 1_000_000 for ns in medians[tree].values()), medians[tree]
