"""Many independent consumers, one kernel subscription (issue 14), through the public API.

The "Why" scenarios of the issue come first; each failed on the code before the fan-out
(MonitorError, a swapped handler, or events that never came). Then the isolation rules.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import threading
import time
from typing import Any

import pytest

from procobsrv import (
    ApplicationScope,
    CallbackHandler,
    EventKind,
    MonitorError,
    QueuedItem,
    awatch,
    watch,
)
from tests.fakes.availability import require_connector
from tests.fakes.collector import Blocking, Collector
from tests.fakes.gauges import leaves_nothing_behind, open_fds, wait_until
from tests.fakes.scripted import ScriptedSource, items
from tests.fakes.session import shared_scope

pytestmark = [pytest.mark.timeout(60), pytest.mark.kernel]


def child(script: str = "exit 0") -> int:
    """Run a short-lived child to its end; its pid."""
    proc = subprocess.Popen(["sh", "-c", script])
    proc.wait()
    return proc.pid


def storm(n: int) -> int:
    """A shell forks ``n`` subshells as fast as it can; the shell's pid."""
    proc = subprocess.Popen(
        ["sh", "-c", f'i=0; while [ $i -lt {n} ]; do ( : ) & i=$((i+1)); done; wait; echo "$$"'],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate()
    return int(out)


def stream_until_exit(stream: Any, pid: int) -> list[QueuedItem]:
    seen = []
    for event in stream:
        seen.append(event)
        if event.process_id == pid and event.kind is EventKind.EXITED:
            break
    return seen


def stopped_scope(handler: Collector) -> ApplicationScope:
    """The application's scope on the real kernel, bound to ``handler``, not monitoring."""
    require_connector()
    scope = ApplicationScope.get_instance(handler)
    scope.stop_monitoring()
    return scope


@pytest.fixture
def app() -> Any:
    """The application's own handler, started the article's way."""
    handler = Collector()
    scope = stopped_scope(handler)
    with leaves_nothing_behind():
        assert scope.start_monitoring("app-param")
        yield handler
        scope.stop_monitoring()


# -- the "Why" ----------------------------------------------------------------------
def test_watch_runs_beside_the_applications_handler(app: Collector) -> None:
    # Before: MonitorError ("monitoring is already running with another handler").
    scope = ApplicationScope.get_instance()
    with watch(timeout=10) as events:
        pid = child("sleep 0.1")
        seen = stream_until_exit(events, pid)
        assert seen[-1].process_id == pid
    app.wait_exit(pid)
    assert scope.handler is app and set(app.params) == {"app-param"}


@pytest.mark.usefixtures("connector")
def test_two_awatch_at_once_both_see_every_event() -> None:
    # Before: the second awatch() raised MonitorError.

    async def consume(events: Any, pid: list[int]) -> list[int]:
        got, exited = [], set()
        async for event in events:
            got.append(event.process_id)
            if event.kind is EventKind.EXITED:
                exited.add(event.process_id)
            if pid and pid[0] in exited:
                break
        return got

    async def main() -> None:
        pid: list[int] = []
        async with awatch(timeout=10) as first, awatch(timeout=10) as second:
            tasks = [asyncio.create_task(consume(s, pid)) for s in (first, second)]
            proc = await asyncio.create_subprocess_exec("true")
            pid.append(proc.pid)
            await proc.wait()
            # Its exit may have been consumed before its pid was known: one more child's
            # events make each consumer look again (other processes' may never come).
            await (await asyncio.create_subprocess_exec("true")).wait()
            a, b = await asyncio.gather(*tasks)
        assert pid[0] in a and pid[0] in b

    with leaves_nothing_behind():
        asyncio.run(main())


def test_a_library_stream_ending_leaves_the_applications_monitoring_alone(app: Collector) -> None:
    # Before: the library could only run by stopping the application's monitoring, which
    # left the stream's internal handler bound in the scope instead of the application's.
    scope = ApplicationScope.get_instance()
    with watch(timeout=10) as events:
        assert stream_until_exit(events, child())
    assert scope.is_monitoring and scope.handler is app and len(scope.subscriptions) == 1
    pid = child("exit 5")  # after the stream has gone
    assert app.wait_exit(pid).exit_code == 5


def test_a_kept_scope_delivers_after_a_watch_has_run_and_ended() -> None:
    # Before: watch() swapped the scope's handler for its own, so the application's kept
    # scope then started with the stream's handler and delivered 0 events, silently.
    handler = Collector()
    scope = stopped_scope(handler)
    with leaves_nothing_behind():
        with watch(timeout=10, kinds="exec") as events:
            ran = child()
            seen = next((event for event in events if event.process_id == ran), None)
        assert seen is not None and seen.kind is EventKind.EXEC
        assert scope.handler is handler
        assert scope.start_monitoring()
        try:
            pid = child("exit 6")
            assert handler.wait_exit(pid).exit_code == 6
        finally:
            scope.stop_monitoring()


@pytest.mark.usefixtures("connector")
def test_breaking_out_of_a_kept_stream_blocks_nothing_else() -> None:
    # Before: a stream still referenced after ``break`` kept monitoring for itself, and
    # nothing else in the process could start (MonitorError).
    with leaves_nothing_behind():
        kept = watch(timeout=10)
        timer = threading.Timer(0.1, child)
        timer.start()
        for _event in kept:
            break
        timer.join()
        handler = Collector()
        scope = ApplicationScope.get_instance(handler)
        assert scope.start_monitoring()
        try:
            with watch(timeout=10) as other:
                pid = child("exit 7")
                assert handler.wait_exit(pid).exit_code == 7
                assert stream_until_exit(other, pid)[-1].exit_code == 7
        finally:
            scope.stop_monitoring()
        assert not kept.closed
        kept.close()


# -- isolation ----------------------------------------------------------------------------
class SlowHandler(Collector):
    """Takes ``delay`` seconds per event (busy: a handler doing real work)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        end = time.perf_counter() + self.delay
        while time.perf_counter() < end:
            pass
        super().on_process_event(item, param)


def test_a_slow_subscriber_beside_a_fast_one_the_fast_one_loses_nothing() -> None:
    # Exact counts with a scripted source: 20,000 events as fast as they can be queued.
    with leaves_nothing_behind():
        source = ScriptedSource()
        scope = shared_scope()
        fast, slow = Collector(), SlowHandler(50e-6)
        with scope.subscribe(fast, source=source) as f, scope.subscribe(slow, queue_limit=500) as s:
            for first in range(1, 20_001, 100):
                source.publish(items(100, first))
            assert fast.wait_for(lambda: len(fast.items) == 20_000, 20)
            assert s.stats().queued <= 500  # the slow one's window stays in its bound
        assert [i.process_id for i in fast.items] == list(range(1, 20_001))
        assert fast.lost == 0 and f.lost == 0 and f.stats().total == 20_000
        got = [i.process_id for i in slow.items]
        assert (
            got == sorted(got)
            and s.lost > 0
            and len(got) + s.lost == 20_000 == len(got) + slow.lost
        )


def test_a_slow_subscriber_beside_a_fast_one_costs_the_fast_one_nothing() -> None:
    # The fast handler starts alone (the retrieval thread calls it itself); a stuck one
    # joins in the middle of the stream. The fast one moves to a thread of its own between
    # two batches: it gets every event once, in order, while the stuck one holds its first
    # event for the whole run; the stuck one's losses are its own, counted exactly.
    with leaves_nothing_behind():
        source = ScriptedSource()
        scope = shared_scope()
        fast, stuck = Collector(), Blocking(first_only=True)
        before = set(threading.enumerate())
        with scope.subscribe(fast, source=source) as f:
            threads_alone = {t.name for t in set(threading.enumerate()) - before}
            for first in range(1, 5_001, 100):
                source.publish(items(100, first))
            assert fast.wait_for(lambda: len(fast.items) == 5_000, 20)
            with scope.subscribe(stuck, queue_limit=300) as s:
                for first in range(5_001, 20_001, 100):
                    source.publish(items(100, first))
                    if first == 5_001:
                        assert stuck.inside.wait(5)  # stuck from here to the end
                assert fast.wait_for(lambda: len(fast.items) == 20_000, 20)
                assert not stuck.release.is_set() and len(stuck.items) == 0
                assert s.stats().queued <= 300
                stuck.release.set()
        assert not any(n.startswith("procobsrv-deliver") for n in threads_alone)
        assert [i.process_id for i in fast.items] == list(range(1, 20_001))
        assert fast.lost == 0 and f.lost == 0 and f.stats().total == 20_000
        # It was offered every event from 5,001 on: each one delivered, or counted lost.
        got = [i.process_id for i in stuck.items]
        assert got == sorted(got) and got[0] >= 5_001 and len(got) <= 300
        assert s.lost == stuck.lost == s.stats().queue_overflow > 0
        assert len(got) + s.lost == 15_000


def publishing(source: ScriptedSource, total: int) -> threading.Thread:
    """A started thread that publishes events 1 to ``total``, 50 at a time, 0.5 ms apart."""

    def publish() -> None:
        for start in range(1, total + 1, 50):
            source.publish(items(50, start))
            time.sleep(0.0005)

    publisher = threading.Thread(target=publish)
    publisher.start()
    return publisher


def test_subscribers_coming_and_going_while_events_flow_cost_the_first_nothing() -> None:
    # The first handler is called by the retrieval thread until the first newcomer; from
    # then on by its own thread. Newcomers join and leave again and again while 30,000 events
    # flow: the first gets every event once, in order.
    with leaves_nothing_behind():
        source = ScriptedSource()
        scope = shared_scope()
        first = Collector()
        with scope.subscribe(first, source=source) as f:
            publisher = publishing(source, 30_000)
            while publisher.is_alive() or len(first.items) < 30_000:
                with scope.subscribe(Collector()) as other:
                    time.sleep(0.01)
                assert other.closed
                if not publisher.is_alive():
                    assert first.wait_for(lambda: len(first.items) == 30_000, 20)
            publisher.join()
        assert [i.process_id for i in first.items] == list(range(1, 30_001))
        assert first.lost == 0 and f.lost == 0


class ThreadRecorder(Collector):
    """A Collector that also records the name of the thread each event came on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        self.threads.append(threading.current_thread().name)
        super().on_process_event(item, param)


def delivery_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("procobsrv-deliver-")]


def test_a_handler_alone_again_goes_back_inline_and_loses_nothing_in_the_moves() -> None:
    # Each newcomer moves the first handler to a thread of its own; once it has left, the
    # retrieval thread calls the first handler itself again, after what its window held.
    # Events flow all along: none is lost or reordered across the moves, and at the end no
    # delivery thread is left for a handler that is alone.
    with leaves_nothing_behind():
        source = ScriptedSource()
        scope = shared_scope()
        first = ThreadRecorder()
        with scope.subscribe(first, source=source) as f:
            publisher = publishing(source, 20_000)
            while publisher.is_alive():
                with scope.subscribe(Collector()):
                    time.sleep(0.01)
                time.sleep(0.01)
            publisher.join()
            assert first.wait_for(lambda: len(first.items) == 20_000, 20)
            source.publish(items(1, 20_001))  # the next batch after the last leave
            assert first.wait_for(lambda: len(first.items) == 20_001, 10)
            assert delivery_threads() == []
            assert first.threads[-1] == "procobsrv-retrieval"
        assert [i.process_id for i in first.items] == list(range(1, 20_002))
        assert first.lost == 0 and f.lost == 0
        moves_back = sum(
            1
            for before, after in zip(first.threads, first.threads[1:], strict=False)
            if before.startswith("procobsrv-deliver-") and after == "procobsrv-retrieval"
        )
        assert moves_back > 1


@pytest.mark.usefixtures("connector")
def test_a_slow_subscriber_on_the_real_kernel_does_not_cost_the_fast_one_an_event() -> None:
    with leaves_nothing_behind():
        scope = shared_scope()
        fast, slow = Collector(), SlowHandler(50e-6)
        with scope.subscribe(fast) as f, scope.subscribe(slow, queue_limit=50) as s:
            shell = storm(1500)
            fast.wait_exit(shell)
            assert slow.wait_for(lambda: s.queued == 0, 20)
        assert f.lost == 0 and fast.lost == 0
        forked = {
            i.process_id for i in fast.items if i.kind is EventKind.CREATED and i.parent_id == shell
        }
        ended = {i.process_id for i in fast.items if i.kind is EventKind.EXITED} & forked
        assert len(forked) == len(ended) == 1500, "the fast subscriber missed some of the storm"
        # The slow one kept its own account: every storm event it did not get, it was told of.
        mine = [i for i in slow.items if i.process_id in forked]
        assert len(mine) + s.lost >= 3000


class Stuck(Blocking):
    """Records each event, then blocks until released (the stop's log names this class)."""

    def __init__(self) -> None:
        super().__init__(record_first=True)


@pytest.mark.usefixtures("connector")
def test_a_stuck_subscriber_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    stuck, other = Stuck(), Collector()
    with leaves_nothing_behind():
        scope = shared_scope()
        with scope.subscribe(other):
            blocked = scope.subscribe(stuck, queue_limit=5)
            child()
            assert stuck.inside.wait(10)
            pids = [child(f"exit {n}") for n in range(20)]  # while it is stuck
            for n, pid in enumerate(pids):
                assert other.wait_exit(pid).exit_code == n
            assert blocked.lost > 0  # it lost its own events, and was told how many
            began = time.monotonic()
            with caplog.at_level(logging.WARNING):
                blocked.close(timeout=0.3)
            assert time.monotonic() - began < 2
            assert "Stuck" in caplog.text and "still running" in caplog.text
            calls = len(stuck.items)
            stuck.release.set()
            time.sleep(0.1)
            assert len(stuck.items) == calls  # called no more after close returned
            pid = child("exit 9")
            assert other.wait_exit(pid).exit_code == 9


@pytest.mark.usefixtures("connector")
def test_every_subscriber_sees_the_events_in_the_same_order() -> None:
    first, second = Collector(), Collector()
    with leaves_nothing_behind():
        scope = shared_scope()
        with scope.subscribe(first), scope.subscribe(second), watch(timeout=10) as stream:
            shell = storm(300)
            streamed = stream_until_exit(stream, shell)
            first.wait_exit(shell)
            second.wait_exit(shell)

    def ours(events: list[QueuedItem]) -> list[tuple[Any, ...]]:
        return [
            (e.kind, e.process_id, e.monotonic_ns)
            for e in events
            if e.parent_id == shell or e.process_id == shell
        ]

    assert len(ours(first.items)) >= 600
    assert ours(first.items) == ours(second.items) == ours(streamed)


class NoOverlap(CallbackHandler):
    """Fails the test if two calls are ever inside it at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.overlapped = False
        self.calls = 0
        self.lock = threading.Lock()

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        with self.lock:
            self.inside += 1
            self.overlapped |= self.inside > 1
        time.sleep(0.0002)
        self.calls += 1
        with self.lock:
            self.inside -= 1

    def on_events_lost(self, count: int, param: Any) -> None:
        self.on_process_event(None, param)  # type: ignore[arg-type]


def test_a_handlers_calls_never_overlap_and_it_cannot_be_subscribed_twice() -> None:
    with leaves_nothing_behind():
        source = ScriptedSource()
        scope = shared_scope()
        handlers = [NoOverlap() for _ in range(3)]
        subs = [
            scope.subscribe(h, source=source if i == 0 else None) for i, h in enumerate(handlers)
        ]
        with pytest.raises(MonitorError, match="already subscribed"):
            scope.subscribe(handlers[1])
        for first in range(1, 1001, 50):
            source.publish(items(50, first))
            extra = scope.subscribe(NoOverlap())  # others come and go meanwhile
            extra.close()
        wait_until(lambda: all(h.calls >= 1000 for h in handlers), 20)
        for s in subs[::-1]:
            s.close()
        assert not any(h.overlapped for h in handlers)
        assert all(h.calls == 1000 for h in handlers)


def test_a_later_subscriber_cannot_bring_its_own_source() -> None:
    with leaves_nothing_behind():
        first, second = ScriptedSource(), ScriptedSource()
        with (
            shared_scope().subscribe(Collector(), source=first),
            pytest.raises(MonitorError, match="source="),
        ):
            watch(source=second)
        second.close()


@pytest.mark.usefixtures("connector")
def test_a_garbage_collected_stream_releases_its_subscription() -> None:
    with leaves_nothing_behind():
        stream = watch()
        scope = shared_scope()
        assert scope.is_monitoring and len(scope.subscriptions) == 1
        del stream
        gc.collect()
        assert not scope.is_monitoring


@pytest.mark.usefixtures("connector")
def test_the_last_subscriber_out_releases_the_kernel_side() -> None:
    threads, fds = set(threading.enumerate()), open_fds()
    handler = Collector()
    scope = ApplicationScope.get_instance(handler)
    assert scope.start_monitoring()
    subscription = scope.subscribe(Collector())
    stream = watch()
    kernel_fds = len(open_fds() - fds)
    assert kernel_fds >= 4  # the socket and three eventfds
    scope.stop_monitoring()  # the scope's own handler leaves first
    assert scope.is_monitoring and len(open_fds() - fds) == kernel_fds
    subscription.close()
    assert scope.is_monitoring and not scope.subscriptions[0].closed
    pid = child("exit 3")
    assert stream_until_exit(stream, pid)[-1].exit_code == 3
    stream.close()  # the last one
    assert not scope.is_monitoring
    assert set(threading.enumerate()) == threads and open_fds() == fds


def test_stats_per_subscriber_and_for_the_whole_scope() -> None:
    with leaves_nothing_behind():
        source = ScriptedSource()
        scope = shared_scope()
        a, b = Collector(), Collector()
        with scope.subscribe(a, source=source) as sa:
            source.publish(items(10))
            assert a.wait_for(lambda: len(a.items) == 10)
            with scope.subscribe(b) as sb:
                source.publish(items(5, 11))
                assert b.wait_for(lambda: len(b.items) == 5) and a.wait_for(
                    lambda: len(a.items) == 15
                )
                whole = scope.stats()
                assert whole.subscribers == 2 and whole.received == 15
                assert whole.total == 20 and sa.stats().total == 15 and sb.stats().total == 5
        assert scope.stats().total == 20 and scope.stats().subscribers == 0
        assert os.getpid() > 0
