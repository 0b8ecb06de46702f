"""cgroup v2 directories of a test's own under /sys/fs/cgroup (root only), removed after."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from procobsrv.linux import procfs


@contextmanager
def own_cgroup(prefix: str) -> Iterator[Path]:
    """A new cgroup directory ``<prefix>-<pid>-<ns>`` at the top of the hierarchy; it and
    every directory made in it are removed at the end, deepest first (skips without root or
    cgroup v2)."""
    root = procfs.cgroup2_root()
    if root is None or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup v2 hierarchy")
    path = Path(root) / f"{prefix}-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir()
    try:
        yield path
    finally:
        for directory in sorted(path.rglob("*"), key=lambda p: -len(p.parts)):
            if directory.is_dir():
                remove(directory)
        remove(path)


def remove(directory: Path) -> None:
    for _ in range(100):  # the children's exits release it a moment later
        try:
            directory.rmdir()
            return
        except OSError:
            time.sleep(0.05)
