"""Builds driver/ with its GNUmakefile, once per test session and target."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from tests.fakes.availability import require_tool, unavailable

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "driver"
OUT = DRIVER / "out"


@functools.cache
def _make(target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-C", str(DRIVER), target],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def make(target: str) -> subprocess.CompletedProcess[str]:
    """Runs `make -C driver <target>`; fails the test with the compiler output on error."""
    require_tool("make")
    if target in ("all", "selftest"):
        require_tool("x86_64-w64-mingw32-gcc")
        require_tool("x86_64-w64-mingw32-objdump")
    else:
        require_tool("cc")
    result = _make(target)
    if result.returncode != 0:
        raise AssertionError(f"make {target} failed:\n{result.stdout}\n{result.stderr}")
    return result


def require_sanitizer(binary: Path) -> None:
    if not binary.exists():
        unavailable(f"{binary.name} was not built")
