"""Fixtures of the Windows tests: a simulated kernel32/advapi32 behind WinApi."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from procobsrv.windows import winapi
from tests.windows.win_fakes import FakeWindows


@pytest.fixture
def fake(mocker: Any) -> Iterator[FakeWindows]:
    """A fresh simulated Windows, also installed as what ``winapi.api()`` returns."""
    system = FakeWindows(mocker)
    previous = winapi.set_api(system.api())
    try:
        yield system
    finally:
        winapi.set_api(previous)
