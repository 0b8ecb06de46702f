"""Which clock: the KernelSource contract on time, checked for every source.

``QueuedItem.monotonic_ns`` and ``start_ns`` are on the source's monotonic clock, which
``KernelSource.monotonic_now_ns()`` reads; ``QueuedItem.timestamp`` is wall time (seconds
since the Unix epoch). So for every source, an event that happens between two reads of
``monotonic_now_ns()`` carries a ``monotonic_ns`` between them, and a ``timestamp`` between
two reads of ``time.time()``.

Each source is one entry of :data:`SOURCES`: a context manager that opens the source and
yields it with a function that makes one process start and returns its pid. A new source
adds its entry (the eBPF source's clock is CLOCK_MONOTONIC, like the connector's).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from procobsrv.events import EventKind, QueuedItem
from procobsrv.platform import KernelSource
from tests.fakes.availability import require_connector, unavailable

#: Wall time is the monotonic stamp plus an offset read once at open; NTP slewing in between
#: and the read itself may move it this far (seconds).
WALL_TOLERANCE_S = 0.05
Spawn = Callable[[], int]


@contextmanager
def connector_source() -> Iterator[tuple[KernelSource, Spawn]]:
    if not sys.platform.startswith("linux"):
        unavailable("the process-events connector needs Linux")
    require_connector()
    from procobsrv.linux import ConnectorSource

    def spawn() -> int:
        child = subprocess.Popen(["true"])
        child.wait()
        return child.pid

    with ConnectorSource() as source:
        yield source, spawn


@contextmanager
def driver_source(mocker: Any) -> Iterator[tuple[KernelSource, Spawn]]:
    """ProcObsrv.sys over the simulated kernel32: its clock is the interrupt time."""
    from procobsrv.windows import contract
    from procobsrv.windows.source import DriverSource
    from tests.fakes.windows import FakeWindows

    fake = FakeWindows(mocker)
    fake.interrupt_offset = 3_600 * 10**7  # booted an hour before CLOCK_MONOTONIC's zero
    driver = fake.start_driver_directly()
    pids = iter(range(1000, 2000))

    def spawn() -> int:
        pid = next(pids)
        driver.notify(contract.KIND_CREATE, pid)
        return pid

    with DriverSource(api=fake.api(), load_driver=False) as source:
        yield source, spawn


SOURCES: dict[str, Callable[[Any], AbstractContextManager[tuple[KernelSource, Spawn]]]] = {
    "connector": lambda mocker: connector_source(),
    "driver": driver_source,
}


def created(source: KernelSource, pid: int, deadline_s: float = 5.0) -> QueuedItem:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for item in source.fetch_batch().items:
            if item.kind is EventKind.CREATED and item.process_id == pid:
                return item
        time.sleep(0.005)
    raise AssertionError(f"no CREATED event for pid {pid}")


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_event_times_are_on_the_sources_clock(name: str, mocker: Any) -> None:
    with SOURCES[name](mocker) as (source, spawn):
        before, wall_before = source.monotonic_now_ns(), time.time()
        pid = spawn()
        after, wall_after = source.monotonic_now_ns(), time.time()
        item = created(source, pid)
    assert before <= item.monotonic_ns <= after, (before, item.monotonic_ns, after)
    assert item.start_ns == item.monotonic_ns  # a process seen starting: start = its event
    assert wall_before - WALL_TOLERANCE_S <= item.timestamp <= wall_after + WALL_TOLERANCE_S


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_the_clock_is_monotonic_in_ns(name: str, mocker: Any) -> None:
    with SOURCES[name](mocker) as (source, _):
        first = source.monotonic_now_ns()
        time.sleep(0.02)
        second = source.monotonic_now_ns()
    assert isinstance(first, int)
    assert 10_000_000 <= second - first < 10_000_000_000  # ns, not 100 ns or us units
