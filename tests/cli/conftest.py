"""The console tool's tests start real `procobsrv watch` processes: none outlives its test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.watch import kill_started


@pytest.fixture(autouse=True)
def _no_watch_left_behind() -> Iterator[None]:
    """A failing test must not leave a watch (or a shell) running."""
    yield
    kill_started()
