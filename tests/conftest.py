"""Fixtures every test may use: the kernel sources it needs (skip locally, fail in CI when
one is unusable: tests/fakes/availability.py) and a running scope on the real kernel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from procobsrv import ApplicationScope
from tests.fakes.availability import require_connector, require_ebpf
from tests.fakes.collector import Collector


@pytest.fixture
def connector() -> None:
    """The test needs the kernel's process-events connector."""
    require_connector()


@pytest.fixture
def ebpf() -> None:
    """The test needs to load the eBPF program."""
    require_ebpf()


@pytest.fixture
def collector(connector: None) -> Iterator[Collector]:
    """A running ApplicationScope on the real kernel, feeding a Collector."""
    handler = Collector()
    scope = ApplicationScope.get_instance(handler)
    assert scope.start_monitoring("test-param")
    try:
        yield handler
    finally:
        scope.stop_monitoring()
