"""CI smoke test of ``python -m benchmarks.decode_cost``: one short run per tree (this one
against itself), its figures printed."""

from __future__ import annotations

import re

import pytest
from benchmarks.harness import ROOT

from benchmarks import decode_cost


def test_the_decode_cost_is_printed_for_both_trees(capsys: pytest.CaptureFixture[str]) -> None:
    decode_cost.main(["--other", str(ROOT), "--reps", "1", "--processes", "50", "--args", "200"])
    out = capsys.readouterr().out
    figures = re.findall(r"^  (this|other) +([\d.]+) us per process", out, re.MULTILINE)
    assert [tree for tree, _ in figures] == ["this", "other"], out
    assert all(float(us) > 0 for _, us in figures), out
    assert "per argv byte: this / other = " in out
