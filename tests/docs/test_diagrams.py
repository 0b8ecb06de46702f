"""The diagrams in docs/ are what their Graphviz sources render to, and the docs show them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.fakes.availability import require_tool

ROOT = Path(__file__).resolve().parents[2]
DIAGRAMS = ROOT / "docs" / "diagrams"
SCRIPT = ROOT / "scripts" / "render-diagrams"


def run_check(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_committed_svgs_are_what_the_sources_render_to() -> None:
    require_tool("dot")
    result = run_check(DIAGRAMS)
    assert result.returncode == 0, result.stderr


def test_a_stale_svg_is_caught(tmp_path: Path) -> None:
    require_tool("dot")
    copy = tmp_path / "diagrams"
    shutil.copytree(DIAGRAMS, copy)
    source = copy / "event-linux.dot"
    source.write_text(source.read_text().replace("on_process_event", "on_something_else"))
    (copy / "pipeline.svg").unlink()
    result = run_check(copy)
    assert result.returncode == 1
    assert "event-linux.svg: not what event-linux.dot renders to" in result.stderr
    assert "pipeline.svg: missing" in result.stderr
    assert "event-windows.svg" not in result.stderr  # untouched: still up to date


def test_every_diagram_is_shown_in_the_docs() -> None:
    pages = "\n".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))
    shown = set(re.findall(r"diagrams/([\w.-]+\.svg)", pages))
    sources = {p.with_suffix(".svg").name for p in DIAGRAMS.glob("*.dot")}
    assert sources, "no diagram sources"
    assert sources <= shown, f"diagrams no page shows: {sorted(sources - shown)}"
    assert shown <= sources, f"pages show diagrams without a source: {sorted(shown - sources)}"
