"""A stalled handler under a real process storm: the queue stays bounded, losses are reported."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from procobsrv import OverflowPolicy, QueuedItem
from procobsrv.container import DEFAULT_QUEUE_LIMIT
from procobsrv.linux import ConnectorSource
from procobsrv.linux import connector_abi as abi
from procobsrv.scope import ApplicationScope
from tests.fakes.collector import Blocking
from tests.fakes.connector import RecordingDecoder, monitoring
from tests.fakes.gauges import rss_bytes, wait_until
from tests.fakes.storm import Storm

pytestmark = pytest.mark.kernel


def bytes_per_item(items: list[QueuedItem]) -> float:
    """Memory a queued item holds, counting objects shared between items once."""
    seen: set[int] = set()
    total = 0
    for item in items:
        objects: list[object] = [item, item.image, item.command_line, *(item.command_line or ())]
        for obj in objects:
            if obj is not None and id(obj) not in seen:
                seen.add(id(obj))
                total += sys.getsizeof(obj)
    return total / len(items) + 8  # + the deque's slot


def stalled() -> Blocking:
    """Blocks on the first event until released: a consumer that stopped consuming."""
    return Blocking(timeout=60, first_only=True)


def test_the_defaults_are_drop_oldest_and_100000_events() -> None:
    import inspect

    params = inspect.signature(ApplicationScope.start_monitoring).parameters
    assert params["queue_limit"].default == DEFAULT_QUEUE_LIMIT == 100_000
    assert params["overflow"].default is OverflowPolicy.DROP_OLDEST


def test_stalled_handler_under_a_storm_keeps_memory_flat() -> None:
    limit = 2000
    handler = stalled()
    with monitoring(handler, queue_limit=limit) as scope:
        subprocess.run(["/bin/true"], check=True)
        assert handler.inside.wait(5)
        storm = Storm(spawners=2, per_spawner=30_000, seconds=6.0)
        # Past the warm-up (the queue full, allocator arenas sized), memory must stay put.
        assert wait_until(lambda: scope.stats().queue_overflow > 3 * limit, 10)
        rss0, dropped0, full_at = rss_bytes(), scope.stats().queue_overflow, time.time()
        peak_queue = 0
        (subscription,) = scope.subscriptions
        while storm.running():
            peak_queue = max(peak_queue, subscription.stats().queued)  # the handler's window
            time.sleep(0.05)
        time.sleep(0.3)  # the last events reach the queue
        rss1, dropped1 = rss_bytes(), scope.stats().queue_overflow
        pids = storm.wait()  # (after measuring: the ground truth itself takes memory)
        handler.release.set()
    stats = scope.stats()
    grown, dropped = rss1 - rss0, dropped1 - dropped0
    per_item = bytes_per_item(handler.items[-1000:])
    print(
        f"storm of {len(pids)} processes: {dropped} events dropped while RSS grew by "
        f"{grown} bytes; a queued event costs {per_item:.0f} bytes"
    )
    assert peak_queue <= limit
    assert dropped >= 5000  # the storm really went on while we measured...
    # ...and memory did not follow it: an unbounded queue would have grown by
    # dropped * per_item. What is seen is allocator noise (a few 256 KiB pymalloc arenas).
    assert grown < dropped * per_item / 2
    # Every loss reached on_events_lost; the queue's share is the overflow count.
    assert handler.lost == stats.lost >= stats.queue_overflow > 0
    assert stats.lost == stats.queue_overflow  # a 16 MiB socket buffer: no kernel loss
    # DROP_OLDEST kept the newest events: nothing of the storm older than the moment the
    # queue was full survived (it was replaced several times over since). (Whether the
    # storm's very last exit survived depends on other processes on the machine.)
    assert min(i.timestamp for i in handler.of(pids)) > full_at


def test_drop_newest_keeps_the_earliest_history() -> None:
    handler = stalled()
    source = ConnectorSource()
    source.decoder = decoder = RecordingDecoder()  # tells when the monitor has read an event
    limit, count = 3000, 1500
    with monitoring(
        handler, source=source, queue_limit=limit, overflow=OverflowPolicy.DROP_NEWEST
    ) as scope:
        subprocess.run(["/bin/true"], check=True)
        assert handler.inside.wait(5)
        children = []
        for _ in range(count):  # 4,500 events, one process after the other
            child = subprocess.Popen(["/bin/true"])
            child.wait()
            children.append(child.pid)
        last = children[-1]
        assert wait_until(
            lambda: any(r[2] == abi.PROC_EVENT_EXIT and r[3] == last for r in decoder.seen[-5000:]),
            10,
        )
        # Stop while still stalled (the monitor stops first: nothing more is queued), then
        # let the handler go: what it gets is exactly what the queue kept.
        stopper = threading.Thread(target=scope.stop_monitoring)
        stopper.start()
        assert wait_until(lambda: not source._is_open, 5)
        handler.release.set()
        stopper.join(10)
        assert not stopper.is_alive()
    stats = scope.stats()
    assert handler.lost == stats.lost == stats.queue_overflow > 0
    ours = {i.process_id for i in handler.items if i.parent_id == os.getpid()}  # pids are reused
    kept = [pid in ours for pid in children]
    k = kept.index(False)
    assert not any(kept[k:]), "DROP_NEWEST must keep a prefix of the history"
    assert 0 < k < count
