"""Descendants: which processes belong to the tree, by fork parentage, from events alone."""

from __future__ import annotations

import threading

from procobsrv.descendants import Descendants
from procobsrv.events import EventKind, QueuedItem

ME = 1000


def created(pid: int, ppid: int, at: int) -> QueuedItem:
    return QueuedItem(EventKind.CREATED, pid, ppid, at / 1e9, at, start_ns=at, command_line=["x"])


def exec_(pid: int, ppid: int, at: int, *argv: str) -> QueuedItem:
    return QueuedItem(
        EventKind.EXEC, pid, ppid, at / 1e9, at, image=f"/bin/{argv[0]}", command_line=list(argv)
    )


def exited(
    pid: int, ppid: int, at: int, code: int | None = 0, sig: int | None = None
) -> QueuedItem:
    return QueuedItem(EventKind.EXITED, pid, ppid, at / 1e9, at, exit_code=code, signal=sig)


def feed(tracker: Descendants, *items: QueuedItem) -> None:
    for item in items:
        tracker.on_process_event(item, None)


def test_children_grandchildren_and_orphans_are_followed_strangers_are_not() -> None:
    tracker = Descendants(ME)
    feed(
        tracker,
        created(1, ME, 10),
        exec_(1, ME, 11, "sh", "-c", "x"),
        created(2, 1, 20),
        created(99, 5, 21),  # not ours
        exited(1, ME, 30, 3),  # 2 is re-parented to init: still ours
        created(3, 2, 40),  # a child of the orphan
        exec_(3, 1, 41, "sleep", "1"),
        exited(99, 5, 42),
    )
    assert [p.pid for p in tracker.processes()] == [1, 2, 3]
    assert tracker.alive() == 2
    sh, orphan, sleeper = tracker.processes()
    assert sh.argv == ("sh", "-c", "x") and sh.status == 3 and sh.duration == 20e-9
    assert orphan.parent == sh.key and sleeper.parent == orphan.key
    assert orphan.execs == 0 and orphan.argv == ("x",)  # a fork runs its creator's program
    assert sleeper.name == "sleep" and sleeper.alive


def test_a_reused_pid_is_a_new_process_and_a_stranger_after_the_tree_exited() -> None:
    tracker = Descendants(ME)
    feed(tracker, created(1, ME, 10), exited(1, ME, 20, None, 9), created(1, ME, 30))
    first, second = tracker.processes()
    assert first.key == (1, 10) and first.status == 128 + 9 and second.key == (1, 30)
    # pid 1 ended; a later process whose parent reuses pid 7 is not ours
    feed(tracker, created(7, 1, 40), exited(7, 1, 50), exited(1, ME, 60), created(8, 7, 70))
    assert [p.pid for p in tracker.subtree(1)] == [1]  # the first process with pid 1
    assert next(p for p in tracker.processes() if p.pid == 7).parent == second.key
    assert 8 not in {p.pid for p in tracker.processes()}


def test_subtree_is_one_process_and_its_descendants() -> None:
    tracker = Descendants(ME)
    feed(tracker, created(1, ME, 10), created(2, ME, 11), created(3, 1, 12), created(4, 2, 13))
    assert [p.pid for p in tracker.subtree(2)] == [2, 4]
    assert [p.pid for p in tracker.subtree(1)] == [1, 3]


def test_waits_end_when_the_events_come() -> None:
    tracker = Descendants(ME)
    feed(tracker, created(1, ME, 10))
    assert not tracker.wait_exited(0.01)
    assert not tracker.wait_seen(1, exited=True, timeout=0.01)
    later = threading.Timer(0.05, feed, (tracker, exited(1, ME, 20)))
    later.start()
    assert tracker.wait_seen(1, exited=True, timeout=5)
    assert tracker.wait_exited(5)
    later.join()


def test_take_exited_forgets_them_and_still_follows_the_rest() -> None:
    """What keeps a long follower bounded (the pytest report, after each test)."""
    tracker = Descendants(ME)
    feed(tracker, created(1, ME, 10), created(2, 1, 11), created(3, ME, 12), exited(1, ME, 20))
    feed(tracker, exited(3, ME, 21))
    assert [p.pid for p in tracker.take_exited()] == [1, 3]
    assert [p.pid for p in tracker.processes()] == [2] and tracker.take_exited() == []
    feed(tracker, created(4, 2, 30), exec_(2, 1, 31, "sleep", "1"), exited(2, 1, 40))
    taken = tracker.take_exited()  # the orphan's own child is still followed
    assert [(p.pid, p.execs) for p in taken] == [(2, 1)]
    assert [p.pid for p in tracker.processes()] == [4] and tracker.alive() == 1
