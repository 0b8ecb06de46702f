"""windows/clock.py over the simulated Windows: the interrupt time and the wall offset."""

from __future__ import annotations

import time

from procobsrv.windows.clock import UNIT_NS, UNITS_PER_SECOND, interrupt_time, wall_offset
from procobsrv.windows.device import FILETIME_UNIX_EPOCH
from tests.fakes.windows import FakeWindows, interrupt_time_now

#: Slack for readings taken a few calls apart on a loaded machine (100 ns units): 1 s.
SLACK = UNITS_PER_SECOND


def test_units_are_100_ns() -> None:
    assert UNIT_NS == 100
    assert UNIT_NS * UNITS_PER_SECOND == 1_000_000_000


def test_interrupt_time_reads_query_interrupt_time(fake: FakeWindows) -> None:
    fake.interrupt_offset = 42 * UNITS_PER_SECOND  # "booted" 42 s before CLOCK_MONOTONIC's 0
    before = interrupt_time_now(fake.interrupt_offset)
    now = interrupt_time(fake.api())
    after = interrupt_time_now(fake.interrupt_offset)
    assert before <= now <= after
    assert fake.names() == ["QueryInterruptTime"]


def test_wall_offset_pairs_the_wall_clock_with_two_precise_reads(fake: FakeWindows) -> None:
    fake.interrupt_offset = 7 * UNITS_PER_SECOND
    offset = wall_offset(fake.api())
    expected = time.time_ns() // UNIT_NS + FILETIME_UNIX_EPOCH - fake.interrupt_time()
    assert abs(offset - expected) < SLACK
    assert fake.names() == [
        "QueryInterruptTimePrecise",
        "GetSystemTimePreciseAsFileTime",
        "QueryInterruptTimePrecise",
    ]


def test_setting_the_wall_clock_moves_only_the_offset(fake: FakeWindows) -> None:
    api = fake.api()
    hour = 3_600 * UNITS_PER_SECOND
    first = wall_offset(api)
    fake.wall_skew = -hour  # an administrator sets the clock back an hour
    stamp = interrupt_time(api)
    second = wall_offset(api)
    assert abs((first - second) - hour) < SLACK
    assert interrupt_time(api) >= stamp  # the interrupt time does not go back
