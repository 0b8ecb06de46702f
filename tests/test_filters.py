"""EventFilter's criteria and FilterHandler on real processes."""

from __future__ import annotations

import subprocess
import time

import pytest

from procobsrv import EventFilter, EventKind, FilterHandler, monitor
from tests.fakes.collector import Collector
from tests.fakes.gauges import leaves_nothing_behind
from tests.fakes.scripted import item

pytestmark = pytest.mark.timeout(30)
CREATED, EXEC, EXITED = EventKind.CREATED, EventKind.EXEC, EventKind.EXITED


@pytest.mark.kernel
@pytest.mark.usefixtures("connector")
def test_filter_handler_passes_only_matching_events_of_real_processes() -> None:
    inner = Collector()
    handler = FilterHandler(
        inner, EventFilter(kinds=["exec", "exited"], command_line=r"procobsrv-needle")
    )
    with leaves_nothing_behind(), monitor(handler):
        # Each lives 0.1 s, so that its command line is read from /proc at exec.
        needle = subprocess.Popen(["sh", "-c", "sleep 0.1; true procobsrv-needle"])
        hay = subprocess.Popen(["sh", "-c", "sleep 0.1; true haystack"])
        needle.wait(), hay.wait()
        inner.wait_exit(needle.pid)
        time.sleep(0.2)
    assert [i.kind for i in inner.of(needle.pid)] == [EXEC, EXITED]
    assert inner.of(hay.pid) == [] and handler.rejected > 0
    assert all("procobsrv-needle" in " ".join(i.command_line or ()) for i in inner.items)


def test_event_filter_criteria() -> None:
    sleep = item(EXEC, 5, image="/usr/bin/sleep", command_line=["sleep", "9"], uid=1000)
    anon = item(EXITED, 6)  # image, argv and uid unknown (a process gone before /proc was read)
    assert EventFilter()(sleep) and EventFilter()(anon)
    assert EventFilter(kinds=EXEC)(sleep) and not EventFilter(kinds=[CREATED, EXITED])(sleep)
    assert EventFilter(image=r"/sleep$")(sleep) and not EventFilter(image="/bash$")(sleep)
    assert EventFilter(command_line=r"^sleep 9$")(sleep)
    assert EventFilter(match=r"bin/sleep")(sleep) and EventFilter(match=r"\b9\b")(sleep)
    assert EventFilter(uids=[1000])(sleep) and not EventFilter(uids={0})(sleep)
    for criterion in ({"image": "."}, {"command_line": "."}, {"match": "."}, {"uids": [0]}):
        assert not EventFilter(**criterion)(anon)  # type: ignore[arg-type]
    mine = EventFilter(predicate=lambda i: i.uid == 1000)
    assert mine(sleep) and not mine(anon) and not EventFilter(match="sleep", predicate=mine)(anon)
    both = FilterHandler(
        Collector(), EventFilter(image="sleep", predicate=lambda i: i.process_id == 6)
    )
    both.on_process_event(sleep, None)
    assert (both.passed, both.rejected) == (0, 1)


def test_filter_handler_forwards_losses() -> None:
    inner = Collector()
    FilterHandler(inner, EventFilter(kinds=[CREATED])).on_events_lost(4, None)
    assert inner.lost == 4
