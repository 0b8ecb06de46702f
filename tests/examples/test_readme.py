"""The README's handler is a working program, and the docs show the README's Python code."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)


def test_the_python_how_to_shows_the_readmes_python_blocks() -> None:
    readme = python_blocks(ROOT / "README.md")
    assert readme, "README has no python example"
    shown = python_blocks(ROOT / "docs" / "how-to" / "python.md")
    assert [block for block in readme if block not in shown] == []


@pytest.mark.kernel
@pytest.mark.usefixtures("connector")
def test_readme_handler_reports_a_child(tmp_path: Path) -> None:
    script = tmp_path / "hello.py"
    script.write_text(python_blocks(ROOT / "README.md")[0])
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        hello = subprocess.Popen(
            [sys.executable, str(script)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            # The snippet announces nothing: run children until one is reported (import and
            # start take a moment), then stop it the way its user would, with Ctrl+C.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                child = subprocess.Popen(["sh", "-c", "sleep 0.05; exit 4", "readme-marker"])
                child.wait()
                time.sleep(0.1)
                if f"hello: pid {child.pid} runs" in out.read_text():
                    break
            hello.send_signal(signal.SIGINT)
            assert hello.wait(timeout=10) == 0, out.read_text()
        finally:
            if hello.poll() is None:
                hello.kill()
                hello.wait()
    text = out.read_text()
    sh = os.path.basename(os.path.realpath(shutil.which("sh") or "sh"))  # dash on Debian
    assert f"hello: pid {child.pid} ({sh}) ended, exit code 4" in text, text
    argv = ["sh", "-c", "sleep 0.05; exit 4", "readme-marker"]
    assert f"hello: pid {child.pid} runs {argv}" in text


#: Seconds a README block may run before the test presses Ctrl+C, as its reader would.
BLOCK_RUNS = 12


@pytest.mark.kernel
@pytest.mark.usefixtures("connector")
@pytest.mark.parametrize("index", range(len(python_blocks(ROOT / "README.md"))))
def test_each_readme_block_runs_on_its_own(index: int, tmp_path: Path) -> None:
    """Copied alone into a file, each block runs: no name from another block, and it ends by
    itself (or on Ctrl+C, when it says so) with status 0."""
    script = tmp_path / f"block{index}.py"
    script.write_text(python_blocks(ROOT / "README.md")[index])
    # errors=: a block prints every process of the machine, whose names may not be UTF-8.
    block = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="backslashreplace",
    )
    try:
        _, err = block.communicate(timeout=BLOCK_RUNS)
    except subprocess.TimeoutExpired:
        block.send_signal(signal.SIGINT)
        _, err = block.communicate(timeout=10)
    assert block.returncode == 0, err
    assert "Traceback" not in err, err
