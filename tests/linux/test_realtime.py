"""linux/realtime.py: threads started inside the block run SCHED_FIFO; the caller does not."""

from __future__ import annotations

import os
import threading

from procobsrv.linux.realtime import DEFAULT_PRIORITY, realtime_threads
from tests.fakes.availability import unavailable


def test_threads_started_in_the_block_are_real_time_and_the_caller_is_restored() -> None:
    if os.geteuid() != 0:
        unavailable("SCHED_FIFO needs root (or CAP_SYS_NICE)")
    before = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    seen: list[tuple[int, int]] = []

    def report() -> None:
        seen.append((os.sched_getscheduler(0), os.sched_getparam(0).sched_priority))

    with realtime_threads():
        inside = threading.Thread(target=report)
        inside.start()
        inside.join()
    outside = threading.Thread(target=report)
    outside.start()
    outside.join()
    assert seen == [(os.SCHED_FIFO, DEFAULT_PRIORITY), before]
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before
