"""Ready-made handlers: JSON lines, filtering, process tree; real processes where they matter."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from collections.abc import Callable

import pytest

from procobsrv import (
    EventFilter,
    EventKind,
    FilterHandler,
    JsonLinesHandler,
    ProcessTree,
    monitor,
)
from tests.conftest import Collector, require_connector
from tests.pythonic.helpers import item, leaves_nothing_behind

pytestmark = pytest.mark.timeout(30)
kernel = pytest.mark.kernel
CREATED, EXEC, EXITED = EventKind.CREATED, EventKind.EXEC, EventKind.EXITED


def eventually(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- JSON lines ---------------------------------------------------------------------------
@kernel
def test_json_lines_handler_writes_one_parsable_object_per_event() -> None:
    require_connector()
    out = io.StringIO()
    handler = JsonLinesHandler(out)
    with leaves_nothing_behind(), monitor(handler):
        child = subprocess.Popen(["sh", "-c", "sleep 0.1; exit 7"])  # lives on to be read
        child.wait()
        handler.on_events_lost(3, None)  # a loss line looks like an event line
        time.sleep(0.3)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    mine = [e for e in events if e.get("pid") == child.pid]
    assert [e["kind"] for e in mine] == ["created", "exec", "exited"]
    assert mine[1]["command_line"] == ["sh", "-c", "sleep 0.1; exit 7"]
    assert mine[2]["exit_code"] == 7 and mine[2]["ppid"] == os.getpid()
    assert {"kind": "lost", "count": 3} in events


# -- filtering ----------------------------------------------------------------------------
@kernel
def test_filter_handler_passes_only_matching_events_of_real_processes() -> None:
    require_connector()
    inner = Collector()
    handler = FilterHandler(inner, kinds=["exec", "exited"], command_line=r"procobsrv-needle")
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
    both = FilterHandler(Collector(), image="sleep", predicate=lambda i: i.process_id == 6)
    both.on_process_event(sleep, None)
    assert (both.passed, both.rejected) == (0, 1)


def test_filter_handler_forwards_losses() -> None:
    inner = Collector()
    FilterHandler(inner, kinds=[CREATED]).on_events_lost(4, None)
    assert inner.lost == 4


# -- process tree -------------------------------------------------------------------------
@kernel
def test_process_tree_tracks_child_and_grandchild() -> None:
    require_connector()
    tree = ProcessTree()
    with leaves_nothing_behind(), monitor(tree):
        child = subprocess.Popen(["sh", "-c", "sleep 0.4 & wait"])

        def grandchild_runs_sleep() -> bool:
            kids = tree.children(tree.find(child.pid).key) if tree.find(child.pid) else []
            return any(k.image and k.image.endswith("/sleep") for k in kids)

        eventually(grandchild_runs_sleep)
        me, sh = tree.find(os.getpid()), tree.find(child.pid)
        assert me is not None and sh is not None
        (grand,) = tree.children(sh.key)
        assert me.key == (os.getpid(), 0)  # started before monitoring: start unknown
        assert sh.key == (child.pid, sh.start_ns) and sh.start_ns > 0 and sh.parent == me.key
        assert grand.ppid == child.pid and grand.command_line == ("sleep", "0.4")
        assert [n.key for n in tree.ancestors(grand.key)][:2] == [sh.key, me.key]
        assert {sh.key, grand.key} <= {n.key for n in tree.descendants(me.key)}
        assert sh.alive and sh.lifetime is not None and 0 <= sh.lifetime < 5
        child.wait()
        eventually(lambda: sh.key not in tree and grand.key not in tree)
        assert sh.key not in {n.key for n in tree.children(me.key)}
    gone = {n.key: n for n in tree.exited}
    assert gone[sh.key].exit_code == 0 and not gone[sh.key].alive
    assert 0.35 < (gone[grand.key].lifetime or 0) < 3.0  # it slept 0.4 s
    assert gone[sh.key].lifetime >= gone[grand.key].lifetime  # type: ignore[operator]


def test_process_tree_is_not_confused_by_pid_reuse() -> None:
    tree = ProcessTree()
    feed = tree.on_process_event
    feed(item(CREATED, 100, 1, start_ns=10, at_ns=10), None)
    feed(item(CREATED, 101, 100, start_ns=11, at_ns=11), None)
    assert tree.find(101).parent == (100, 10)  # type: ignore[union-attr]
    feed(item(EXITED, 100, 1, start_ns=10, at_ns=50, exit_code=0), None)
    feed(item(CREATED, 100, 1, start_ns=60, at_ns=60), None)  # the pid again: another process
    assert tree.find(100).key == (100, 60) and tree.children((100, 60)) == []  # type: ignore[union-attr]
    assert tree.parent((101, 11)) is None  # its creator is gone, not the new pid 100
    old = tree.exited[-1]
    assert old.key == (100, 10) and old.lifetime == pytest.approx(40e-9)

    # Another CPU's EXITED of the old process arrives after the new one's CREATED.
    feed(item(CREATED, 200, 1, start_ns=70, at_ns=70), None)
    feed(item(CREATED, 200, 1, start_ns=90, at_ns=90), None)
    feed(item(EXITED, 200, 1, start_ns=70, at_ns=80, exit_code=3), None)
    assert tree.find(200).key == (200, 90)  # type: ignore[union-attr]
    assert [(n.key, n.exit_code) for n in tree.exited][-1] == ((200, 70), 3)

    # A process that started before monitoring: its events carry a /proc start time.
    feed(item(CREATED, 301, 300, start_ns=100, at_ns=100), None)
    assert tree.find(300).key == (300, 0)  # type: ignore[union-attr]
    feed(item(EXEC, 300, 1, start_ns=12345, image="/bin/x"), None)
    assert tree.find(300).image == "/bin/x" and len(tree.find(300).children) == 1  # type: ignore[union-attr]
    feed(item(EXITED, 300, 1, start_ns=12345, at_ns=200), None)
    assert tree.find(300) is None and tree.exited[-1].lifetime is None
    assert tree.find(301).parent == (300, 0)  # type: ignore[union-attr]
    assert sorted(n.pid for n in tree.live()) == [1, 100, 101, 200, 301] and len(tree) == 5
