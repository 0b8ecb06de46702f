"""Fixtures of the agent's tests: real NATS servers (tests/fakes/nats.py), killed at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.nats import NatsServer, single


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
