"""monitor(), watch() and awatch() against the real connector and a scripted source."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time

import pytest

from procobsrv import (
    ApplicationScope,
    EventKind,
    MonitorError,
    OverflowPolicy,
    QueuedItem,
    awatch,
    monitor,
    watch,
)
from tests.fakes.collector import Collector
from tests.fakes.gauges import Ticker, leaves_nothing_behind
from tests.fakes.scripted import FailingSource, ScriptedSource, items

pytestmark = pytest.mark.timeout(30)
kernel = pytest.mark.kernel


# -- monitor() ----------------------------------------------------------------------------
@kernel
@pytest.mark.usefixtures("connector")
def test_monitor_sees_a_child_and_stops_at_the_end_of_the_block() -> None:
    handler = Collector()
    with leaves_nothing_behind():
        with monitor(handler, "my-param") as scope:
            assert scope is ApplicationScope.get_instance() and scope.is_monitoring
            child = subprocess.Popen(["sh", "-c", "exit 3"])
            child.wait()
            assert handler.wait_exit(child.pid).exit_code == 3
        assert not scope.is_monitoring
    assert set(handler.params) == {"my-param"}


@kernel
@pytest.mark.usefixtures("connector")
def test_monitor_stops_when_the_block_raises() -> None:
    handler = Collector()
    with leaves_nothing_behind(), pytest.raises(KeyError), monitor(handler) as scope:
        assert scope.is_monitoring
        raise KeyError("boom")


@kernel
@pytest.mark.usefixtures("connector")
def test_monitor_nests_and_each_block_detaches_only_its_own_handler() -> None:
    outer, inner = Collector(), Collector()
    with leaves_nothing_behind(), monitor(outer) as scope:
        with monitor(inner):  # a second subscriber of the one kernel subscription
            assert len(scope.subscriptions) == 2
        with pytest.raises(MonitorError, match="already subscribed"), monitor(outer):
            pass  # one handler twice would be called from two threads at once
        assert scope.is_monitoring and len(scope.subscriptions) == 1
        child = subprocess.Popen(["true"])
        child.wait()
        outer.wait_exit(child.pid)


# -- watch() ------------------------------------------------------------------------------
@kernel
@pytest.mark.usefixtures("connector")
def test_watch_sees_a_child_and_break_releases_everything() -> None:
    with leaves_nothing_behind():
        # The child exits after watch() has subscribed (which takes milliseconds).
        child = subprocess.Popen(["sh", "-c", "sleep 0.3; exit 4"])
        seen: list[QueuedItem] = []
        for event in watch(kinds="exited", timeout=5):
            assert event.kind is EventKind.EXITED
            if event.process_id == child.pid:
                seen.append(event)
                break
        child.wait()
    assert seen and seen[0].exit_code == 4


def test_watch_timeout_is_idle_time_and_duration_is_total_time() -> None:
    with leaves_nothing_behind():
        source = ScriptedSource()
        stream = watch(timeout=0.4, source=source)

        def publish() -> None:  # one event every 0.1 s for 0.8 s: never idle for 0.4 s
            for pid in range(1, 9):
                time.sleep(0.1)
                source.publish(items(1, pid))

        publisher = threading.Thread(target=publish)
        began = time.monotonic()
        publisher.start()
        got = [e.process_id for e in stream]
        ended = time.monotonic() - began
        publisher.join()
        assert got == list(range(1, 9))
        assert 1.1 < ended < 2.0  # 0.8 s of events, then 0.4 s idle
        assert stream.closed

        began = time.monotonic()
        assert list(watch(duration=0.3, source=ScriptedSource())) == []
        assert 0.25 < time.monotonic() - began < 1.0


def test_watch_close_from_another_thread_ends_a_blocked_loop() -> None:
    with leaves_nothing_behind():
        stream = watch(source=ScriptedSource())
        closer = threading.Timer(0.2, stream.close)
        closer.start()
        assert list(stream) == []
        closer.join()


@pytest.mark.parametrize("policy", [OverflowPolicy.DROP_OLDEST, OverflowPolicy.DROP_NEWEST])
def test_watch_backpressure_is_the_queues_policy_and_losses_are_counted(
    policy: OverflowPolicy,
) -> None:
    with leaves_nothing_behind():
        source = ScriptedSource()
        with watch(timeout=0.5, buffer=4, queue_limit=10, overflow=policy, source=source) as s:
            for first in range(1, 101, 10):  # 100 events while nobody reads
                source.publish(items(10, first))
                time.sleep(0.01)
            got = [e.process_id for e in s]
            assert got == sorted(got) and 0 < s.lost == 100 - len(got)
            assert s.stats().queue_overflow == s.lost
            # The bounded window and the queue hold what survives: the newest or the oldest.
            assert (got[-1] == 100) if policy is OverflowPolicy.DROP_OLDEST else (got[0] == 1)


# -- awatch() -----------------------------------------------------------------------------
@kernel
@pytest.mark.usefixtures("connector")
def test_awatch_sees_a_child_without_blocking_the_loop() -> None:

    async def main() -> QueuedItem:
        ticker = Ticker(0.01)
        async with awatch(kinds=[EventKind.EXITED], timeout=5) as events:
            child = subprocess.Popen(["sh", "-c", "sleep 0.3; exit 5"])
            async for event in events:
                if event.process_id == child.pid:
                    break
            child.wait()
        ticker.cancel()
        assert ticker.ticks >= 15  # the loop ran all along while the stream waited
        return event

    with leaves_nothing_behind():
        event = asyncio.run(main())
    assert event.kind is EventKind.EXITED and event.exit_code == 5


@kernel
@pytest.mark.usefixtures("connector")
def test_awatch_cancellation_stops_monitoring() -> None:
    started = threading.Event()

    async def consume() -> None:
        events = awatch()
        started.set()
        async for _ in events:
            pass

    async def main() -> None:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        assert started.is_set() and ApplicationScope.get_instance().is_monitoring
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not ApplicationScope.get_instance().is_monitoring

    with leaves_nothing_behind():
        asyncio.run(main())


@kernel
@pytest.mark.usefixtures("connector")
def test_awatch_break_out_of_the_loop_stops_monitoring() -> None:

    async def main() -> None:
        child = subprocess.Popen(["sh", "-c", "sleep 0.2"])
        async for event in awatch(timeout=5, source="connector"):  # opens in microseconds
            if event.process_id == child.pid:
                break
        child.wait()
        assert not ApplicationScope.get_instance().is_monitoring

    with leaves_nothing_behind():
        asyncio.run(main())


def test_awatch_backpressure_and_idle_timeout() -> None:
    async def main() -> None:
        source = ScriptedSource()
        events = awatch(timeout=0.3, buffer=4, queue_limit=10, source=source)
        for first in range(1, 101, 10):
            source.publish(items(10, first))
            await asyncio.sleep(0.01)  # the loop is free while the retrieval thread waits
        got = [e.process_id async for e in events]
        assert got == sorted(got) and got[-1] == 100
        assert 0 < events.lost == 100 - len(got) and events.closed

    with leaves_nothing_behind():
        asyncio.run(main())


def test_awatch_consumer_lets_other_tasks_run_while_events_are_always_ready() -> None:
    async def main() -> None:
        source = ScriptedSource()
        events = awatch(buffer=20_000, source=source)
        source.publish(items(10_000))
        while events._subscription.queued < 10_000:  # all ready before consuming starts
            await asyncio.sleep(0.01)
        ticker = Ticker()
        await asyncio.sleep(0)
        ticks_before, got = ticker.ticks, 0
        async for _ in events:
            got += 1
            if got == 10_000:
                break
        ticker.cancel()
        assert ticker.ticks - ticks_before >= 100  # the loop ran the other task all along

    with leaves_nothing_behind():
        asyncio.run(main())


def test_awatch_outside_a_coroutine_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        awatch()


def test_stop_elsewhere_under_a_full_unread_stream_does_not_hang_and_ends_it() -> None:
    with leaves_nothing_behind():
        source = ScriptedSource()
        stream = watch(queue_limit=2, source=source)
        source.publish(items(10))  # one batch: the stream's window keeps the newest two
        time.sleep(0.1)
        began = time.monotonic()
        ApplicationScope.get_instance().shutdown()  # what the interpreter's exit does
        assert time.monotonic() - began < 1.0
        assert [e.process_id for e in stream] == [9, 10]  # what was handed over, then the end
        assert stream.lost == 8 and stream.closed


def join_new_threads(before: set[threading.Thread]) -> None:
    """The retrieval thread ends just after telling the handler; wait for it."""
    for t in set(threading.enumerate()) - before:
        t.join(5)


def test_a_failing_source_raises_from_the_stream_after_its_events() -> None:
    with leaves_nothing_behind():
        threads = set(threading.enumerate())
        source = FailingSource()
        stream = watch(source=source)
        source.publish(items(5))
        source.fail(OSError(19, "No such device"))
        got = []
        with pytest.raises(MonitorError, match="No such device") as raised:
            for event in stream:
                got.append(event.process_id)
        assert got == [1, 2, 3, 4, 5]
        assert isinstance(raised.value.__cause__, OSError) and stream.closed
        join_new_threads(threads)


def test_a_failing_source_raises_from_the_async_stream() -> None:
    async def main() -> list[int]:
        source = FailingSource()
        events = awatch(source=source)
        source.publish(items(3))
        source.fail(OSError(19, "No such device"))
        return [e.process_id async for e in events]

    with leaves_nothing_behind():
        threads = set(threading.enumerate())
        with pytest.raises(MonitorError, match="No such device"):
            asyncio.run(main())
        join_new_threads(threads)
