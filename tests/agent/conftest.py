"""Fixtures of the agent's tests: real NATS servers (tests/fakes/nats.py), killed at the end."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.availability import unavailable
from tests.fakes.nats import NatsServer, single

#: The size of the filesystem `small_filesystem` mounts: a few dozen lines fill it.
SMALL_FILESYSTEM = "64k"


@pytest.fixture
def nats_servers(tmp_path: Path) -> Iterator[list[NatsServer]]:
    """A list the test fills with servers (see :func:`single` and :func:`cluster`)."""
    servers: list[NatsServer] = []
    try:
        yield servers
    finally:
        for s in servers:
            s.kill()


@pytest.fixture
def nats_server(connector: None, nats_servers: list[NatsServer], tmp_path: Path) -> NatsServer:
    """One running server, for a test that also needs the kernel's process-events connector."""
    return single(nats_servers, tmp_path)


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 64 KiB mounted for the test (root), unmounted at the end."""
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs needs root")
    where = tmp_path / "small"
    where.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_FILESYSTEM}", "tmpfs", str(where)], check=True
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
