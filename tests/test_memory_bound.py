"""Queues bounded in bytes, not only in events: what does not fit is dropped and counted."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest

from procobsrv import ApplicationScope, EventKind, OverflowPolicy, QueueContainer, QueuedItem
from procobsrv.bounded import Bounds
from procobsrv.host import current_platform
from procobsrv.memory import DEFAULT_QUEUE_BYTES, batch_bytes, item_bytes
from procobsrv.window import Window
from tests.fakes.collector import Blocking
from tests.fakes.gauges import wait_until
from tests.fakes.scripted import ScriptedSource

pytestmark = pytest.mark.timeout(60)

#: Many short arguments: the shape that costs the most memory per byte of argv.
ARGC = 300


def execs(n: int, start: int = 1, argc: int = ARGC) -> list[QueuedItem]:
    """Exec events with ``argc`` arguments each (pid ``start`` on), all of one size."""
    out = []
    for pid in range(start, start + n):
        argv = [f"{pid:06d}-{i:04d}" for i in range(argc)]
        size = sum(len(a) + 1 for a in argv)
        out.append(
            QueuedItem(
                EventKind.EXEC,
                pid,
                1,
                0.0,
                image=f"/usr/bin/p{pid:06d}",
                command_line=argv,
                command_line_size=size,
            )
        )
    return out


def allocated(make: Callable[[int], list[QueuedItem]], n: int) -> tuple[list[QueuedItem], int]:
    """``make(n)``'s events and the bytes Python allocated to build them."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        items = make(n)
        return items, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_the_estimate_is_within_a_factor_of_what_an_event_really_holds() -> None:
    items, real = allocated(execs, 500)
    estimate = batch_bytes(items)
    assert 0.7 * real <= estimate <= 1.5 * real, (real / 500, estimate / 500)
    small = QueuedItem(EventKind.CREATED, 1, 0, 0.0)
    assert item_bytes(small) < item_bytes(items[0]) / 10


@pytest.mark.parametrize("policy", list(OverflowPolicy))
def test_the_queue_drops_what_exceeds_its_bytes_and_counts_it_exactly(
    policy: OverflowPolicy,
) -> None:
    one = item_bytes(execs(1)[0])
    q = QueueContainer(current_platform(), limit=10**6, policy=policy, byte_limit=10 * one + 5)
    try:
        q.append(execs(6))
        q.append(execs(9, start=7), lost=2)
        assert q.held_bytes <= q.bounds.byte_limit and len(q) == 10
        items, lost, nbytes = q.drain(0)
    finally:
        q.close()
    pids = [i.process_id for i in items]
    assert lost == 2 + 5 and q.overflowed == 5 and nbytes == batch_bytes(items)
    oldest = policy is OverflowPolicy.DROP_OLDEST
    assert pids == (list(range(6, 16)) if oldest else list(range(1, 11)))


@pytest.mark.parametrize("policy", list(OverflowPolicy))
def test_a_window_drops_what_exceeds_its_bytes_and_counts_it_exactly(
    policy: OverflowPolicy,
) -> None:
    batch = execs(30)
    one = item_bytes(batch[0])
    window = Window(Bounds(limit=10**6, byte_limit=12 * one, policy=policy))
    for first in range(0, 30, 10):
        part = batch[first : first + 10]
        window.offer(part, batch_bytes(part), 0)
        assert window.held_bytes <= window.bounds.byte_limit
    window.finish()
    got: list[int] = []
    lost = 0
    while (taken := window.take(0)) is not None:
        got += [i.process_id for i in taken[0]]
        lost += taken[1]
    assert len(got) == 12 and lost == window.lost == window.overflowed == 18
    oldest = policy is OverflowPolicy.DROP_OLDEST
    assert got == (list(range(19, 31)) if oldest else list(range(1, 13)))


def test_a_stalled_handler_holds_no_more_bytes_than_its_bound_and_is_told_every_loss() -> None:
    bound = 200 * item_bytes(execs(1)[0])
    handler = Blocking(timeout=30, first_only=True)
    scope = ApplicationScope.get_instance(handler)
    scope.stop_monitoring()
    source = ScriptedSource()
    scope.start_monitoring(source=source, queue_bytes=bound)
    published = 0
    try:
        source.publish(execs(1))
        published = 1
        assert handler.inside.wait(5)
        peak = 0
        for first in range(2, 3_002, 100):
            source.publish(execs(100, first))
            published += 100
            peak = max(peak, scope.stats().queued_bytes)
        stats = scope.stats
        assert wait_until(lambda: stats().queue_overflow + stats().queued >= published, 10)
        peak = max(peak, scope.stats().queued_bytes)
    finally:
        handler.release.set()
        scope.stop_monitoring()
    stats = scope.stats()
    assert peak <= bound
    assert len(handler.items) + handler.lost == published  # exactly: nothing silent
    assert handler.lost == stats.lost == stats.queue_overflow > 0


def test_the_default_byte_bound_is_the_documented_one() -> None:
    import inspect

    params = inspect.signature(ApplicationScope.start_monitoring).parameters
    assert params["queue_bytes"].default == DEFAULT_QUEUE_BYTES == 64 * 2**20


#: A path as long as the kernel hands over (PATH_MAX); any user can run from a cwd this deep.
PATH_LEN = 4096


def path_execs(n: int, start: int = 1) -> list[QueuedItem]:
    """Exec events with a short argv but a 4 KiB image, cwd and script each (all distinct)."""
    return [
        QueuedItem(
            EventKind.EXEC,
            pid,
            1,
            0.0,
            image=f"/{pid:08d}".ljust(PATH_LEN, "i"),
            cwd=f"/{pid:08d}".ljust(PATH_LEN, "c"),
            script=f"/{pid:08d}".ljust(PATH_LEN, "s"),
            command_line=["sh", "-c", "true"],
            command_line_size=13,
        )
        for pid in range(start, start + n)
    ]


def test_the_estimate_counts_long_paths_within_the_same_factor() -> None:
    items, real = allocated(path_execs, 500)
    estimate = batch_bytes(items)
    assert 0.7 * real <= estimate <= 1.5 * real, (real / 500, estimate / 500)
    assert item_bytes(items[0]) > 3 * PATH_LEN


@pytest.mark.parametrize("policy", list(OverflowPolicy))
def test_the_queue_bound_in_bytes_holds_for_path_heavy_events(policy: OverflowPolicy) -> None:
    # 10 events of 12 KiB of paths each fit; the other 20 are dropped and counted, exactly.
    q = QueueContainer(current_platform(), limit=10**6, policy=policy, byte_limit=10 * 13_000)
    try:
        q.append(path_execs(30))
        assert q.held_bytes <= q.bounds.byte_limit
        items, lost, nbytes = q.drain(0)
    finally:
        q.close()
    assert len(items) == 10 and lost == q.overflowed == 20 and nbytes == batch_bytes(items)


def test_item_bytes_and_batch_bytes_agree_on_every_kind_of_event() -> None:
    varied = [
        QueuedItem(EventKind.CREATED, 1, 0, 0.0),
        QueuedItem(EventKind.EXITED, 2, 1, 0.0, exit_code=3),
        QueuedItem(EventKind.EXEC, 3, 1, 0.0, image="/bin/true", cwd="/"),
        QueuedItem(EventKind.EXEC, 4, 1, 0.0, command_line=["a", "bb"], command_line_size=5),
        QueuedItem(
            EventKind.EXEC,
            5,
            1,
            0.0,
            command_line=["a" * 100],
            command_line_size=4096,
            command_line_truncated=True,
        ),
        *execs(2, 6),
        *path_execs(2, 8),
    ]
    for item in varied:
        assert batch_bytes([item]) == item_bytes(item), item
    assert batch_bytes(varied) == sum(map(item_bytes, varied))
