"""`procobsrv demo`: starts ten children, kills them, and observes every start and exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel
TOOL = [sys.executable, "-m", "procobsrv"]


@pytest.mark.usefixtures("connector")
def test_demo_observes_all_ten() -> None:
    run = subprocess.run([*TOOL, "demo"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "observed 10/10 starts and 10/10 exits" in run.stdout
    assert run.stdout.count("started pid") == 10 and run.stdout.count("by SIGTERM") == 10
