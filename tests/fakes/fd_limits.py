"""Python scripts run in an interpreter of their own (its own fd table and limits), with
helpers to limit and use up file descriptors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

#: Helpers for the scripts run_python runs (each runs in an interpreter of its own).
PRELUDE = """
import os, resource

def limit_fds(soft):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

def take_every_fd():
    taken = []
    try:
        while True:
            taken.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        return taken
"""


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (its own fd table and limits); must print OK."""
    script = PRELUDE + textwrap.dedent(code)
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
    )
    assert run.returncode == 0 and run.stdout.strip().endswith("OK"), run.stdout + run.stderr
    return run
