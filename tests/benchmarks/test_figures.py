"""The performance figures and results are drawn from a saved run, at the docs' column width."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from benchmarks.figures import DPI, FIGURES, WIDTH_IN, draw
from benchmarks.run import LATENCIES, RESULTS, report, rescored


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def saved_run() -> dict[str, object]:
    result: dict[str, object] = json.loads((RESULTS / "latest.json").read_text())
    return result


def test_every_figure_is_drawn_from_the_saved_run_at_the_columns_width(tmp_path: Path) -> None:
    paths = draw(saved_run(), tmp_path, LATENCIES)
    assert [p.name for p in paths] == [f"performance-{name}.png" for name in FIGURES]
    for path in paths:
        width, height = png_size(path)
        assert width == round(WIDTH_IN * DPI) == 680, path.name
        assert 200 < height < 700, (path.name, height)


def test_the_page_shows_every_figure() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "performance.md").read_text()
    for name in FIGURES:
        assert f"(images/performance-{name}.png)" in page, name


def test_the_results_tables_fit_a_column_and_cite_no_issue_numbers() -> None:
    text = report(rescored(saved_run()))
    widths = {line.count("|") - 1 for line in text.splitlines() if line.startswith("|")}
    assert widths and max(widths) <= 9, widths
    assert "issue" not in text.lower()
