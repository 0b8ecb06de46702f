"""Fixtures every test may use: the kernel sources it needs (skip locally, fail in CI when
one is unusable: tests/fakes/availability.py), a running scope on the real kernel, and a
simulated Windows (tests/fakes/windows.py) for the Windows side and `procobsrv driver`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procobsrv import ApplicationScope
from procobsrv.windows import winapi
from tests.fakes.availability import require_connector, require_ebpf
from tests.fakes.collector import Collector
from tests.fakes.windows import FakeWindows


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


@pytest.fixture
def fake(mocker: Any, tmp_path: Path) -> Iterator[FakeWindows]:
    """A fresh simulated Windows, also installed as what ``winapi.api()`` returns.

    Its system directory (GetSystemDirectoryW) is a temporary one with a ``drivers`` folder.
    """
    system = FakeWindows(mocker)
    system.system_directory = str(tmp_path / "Windows" / "System32")
    (tmp_path / "Windows" / "System32" / "drivers").mkdir(parents=True)
    previous = winapi.set_api(system.api())
    try:
        yield system
    finally:
        winapi.set_api(previous)
