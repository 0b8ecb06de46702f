"""Fixtures of the agent's tests: real NATS servers (tests/fakes/nats.py), killed at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.nats import NatsServer


@pytest.fixture
def nats_servers(tmp_path: Path) -> Iterator[list[NatsServer]]:
    """A list the test fills with servers (see :func:`single` and :func:`cluster`)."""
    servers: list[NatsServer] = []
    try:
        yield servers
    finally:
        for s in servers:
            s.kill()
