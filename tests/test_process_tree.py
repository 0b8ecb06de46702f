"""ProcessTree: real children and grandchildren, and pid reuse on synthetic events."""

from __future__ import annotations

import os
import subprocess

import pytest

from procobsrv import EventKind, ProcessTree, monitor
from tests.fakes.gauges import leaves_nothing_behind, wait_until
from tests.fakes.scripted import item

pytestmark = pytest.mark.timeout(30)
CREATED, EXEC, EXITED = EventKind.CREATED, EventKind.EXEC, EventKind.EXITED


@pytest.mark.kernel
@pytest.mark.usefixtures("connector")
def test_process_tree_tracks_child_and_grandchild() -> None:
    tree = ProcessTree()
    with leaves_nothing_behind(), monitor(tree):
        child = subprocess.Popen(["sh", "-c", "sleep 0.4 & wait"])

        def grandchild_runs_sleep() -> bool:
            kids = tree.children(tree.find(child.pid).key) if tree.find(child.pid) else []
            return any(k.image and k.image.endswith("/sleep") for k in kids)

        assert wait_until(grandchild_runs_sleep, 5.0)
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
        assert wait_until(lambda: sh.key not in tree and grand.key not in tree, 5.0)
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
