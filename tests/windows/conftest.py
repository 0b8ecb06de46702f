"""Fixtures of the Windows tests: a simulated kernel32/advapi32 behind WinApi."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procobsrv.windows import winapi
from tests.fakes.windows import FakeWindows


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
