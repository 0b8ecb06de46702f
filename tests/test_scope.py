"""ApplicationScope's contract: singleton, start/stop/start, stop from anywhere, no leftovers."""

from __future__ import annotations

import threading
from typing import Any, TypeVar

import pytest

from procobsrv import ApplicationScope, CallbackHandler, MonitorError, QueuedItem
from tests.fakes.collector import Blocking, Collector
from tests.fakes.gauges import open_fds, wait_until
from tests.fakes.scripted import FailingSource, ScriptedSource, items

Source = TypeVar("Source", bound=ScriptedSource)


def start_on(handler: CallbackHandler, source: Source, param: Any = None, **kw: Any) -> Source:
    """Bind ``handler`` to the scope and start monitoring ``source`` (its kernel is the test)."""
    assert ApplicationScope.get_instance(handler).start_monitoring(param, source=source, **kw)
    return source


@pytest.fixture
def scope() -> ApplicationScope:
    s = ApplicationScope.get_instance(Collector())
    s.stop_monitoring()
    return s


def test_singleton_and_handler_binding(scope: ApplicationScope) -> None:
    assert ApplicationScope.get_instance() is scope
    other = Collector()
    assert ApplicationScope.get_instance(other) is scope and scope.handler is other
    scope.start_monitoring(source=ScriptedSource())
    try:
        with pytest.raises(MonitorError, match="stop_monitoring"):
            ApplicationScope.get_instance(Collector())
        assert ApplicationScope.get_instance(other) is scope  # the same handler is fine
    finally:
        scope.stop_monitoring()
    with pytest.raises(TypeError):
        ApplicationScope(other)


def test_singleton_created_concurrently_is_one_object() -> None:
    seen: list[ApplicationScope] = []
    barrier = threading.Barrier(16)

    def get() -> None:
        barrier.wait()
        seen.append(ApplicationScope.get_instance(Collector()))

    threads = [threading.Thread(target=get) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(s) for s in seen}) == 1


def test_start_stop_start_delivers_in_order_and_flushes_on_stop(scope: ApplicationScope) -> None:
    handler = Collector()
    ApplicationScope.get_instance(handler)
    for round_ in range(3):
        source = ScriptedSource()
        assert scope.start_monitoring(round_, source=source) is True
        assert scope.start_monitoring(source=ScriptedSource()) is False
        source.publish(items(1000), lost=2)
        scope.stop_monitoring()  # what was published is delivered before this returns
        assert (source.opened, source.closed) == (1, 1)
        pairs = zip(handler.items, handler.params, strict=True)
        mine = [i.process_id for i, p in pairs if p == round_]
        assert mine == list(range(1, 1001))
    assert handler.lost == 6
    scope.stop_monitoring()  # idempotent


def test_stop_leaves_no_thread_and_no_fd(scope: ApplicationScope) -> None:
    threads, fds = set(threading.enumerate()), open_fds()
    scope.start_monitoring(source=ScriptedSource())
    # monitor, retrieval: a lone handler is called by the retrieval thread itself
    assert len(threading.enumerate()) == len(threads) + 2
    scope.stop_monitoring()
    assert set(threading.enumerate()) == threads
    assert open_fds() == fds


@pytest.mark.kernel
@pytest.mark.usefixtures("connector")
def test_stop_on_the_real_kernel_leaves_nothing_behind(scope: ApplicationScope) -> None:
    threads, fds = set(threading.enumerate()), open_fds()
    for _ in range(20):
        scope.start_monitoring()
        scope.stop_monitoring()
    assert set(threading.enumerate()) == threads
    assert open_fds() == fds


class Raising(Collector):
    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        super().on_process_event(item, param)
        if item.process_id % 2:
            raise ValueError("odd pid")


def test_handler_exceptions_do_not_stop_delivery(scope: ApplicationScope, caplog) -> None:  # type: ignore[no-untyped-def]
    handler = Raising()
    source = start_on(handler, ScriptedSource())
    source.publish(items(10))
    scope.stop_monitoring()
    assert [i.process_id for i in handler.items] == list(range(1, 11))
    assert scope.stats().handler_errors == 5
    # The first of a kind with its traceback and event; repeats summarised (issue 13, item 14).
    assert "odd pid" in caplog.text and "process_id=1" in caplog.text
    assert "4 more times" in caplog.text


class StopsItself(CallbackHandler):
    def __init__(self) -> None:
        self.seen: list[int] = []
        self.returned = threading.Event()

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        self.seen.append(item.process_id)
        if item.process_id == 3:
            ApplicationScope.get_instance().stop_monitoring()  # must not deadlock
            self.returned.set()


def test_stop_from_inside_the_handler(scope: ApplicationScope) -> None:
    threads, fds = set(threading.enumerate()), open_fds()
    handler = StopsItself()
    source = start_on(handler, ScriptedSource())
    source.publish(items(10))
    assert handler.returned.wait(5)
    assert not scope.is_monitoring
    for t in set(threading.enumerate()) - threads:
        t.join(5)
    assert handler.seen == [1, 2, 3]  # nothing after the stop
    assert set(threading.enumerate()) == threads
    assert open_fds() == fds


def test_stop_from_another_thread_while_handler_runs(scope: ApplicationScope) -> None:
    handler = Blocking(timeout=5)
    source = start_on(handler, ScriptedSource())
    source.publish(items(5))
    assert handler.inside.wait(5)
    stopper = threading.Thread(target=scope.stop_monitoring)
    stopper.start()
    second = threading.Thread(target=scope.stop_monitoring)  # a concurrent stop waits too
    second.start()
    stopper.join(0.2)
    assert stopper.is_alive()  # it waits for the handler...
    handler.release.set()
    stopper.join(5)
    second.join(5)
    assert not stopper.is_alive() and not second.is_alive()
    assert [i.process_id for i in handler.items] == [1, 2, 3, 4, 5]  # ...and delivers the rest


def test_bounded_queue_reports_overflow(scope: ApplicationScope) -> None:
    handler = Blocking(timeout=5)
    source = start_on(handler, ScriptedSource(), queue_limit=100)
    source.publish(items(1))
    assert handler.inside.wait(5)  # the handler is now stuck on pid 1
    source.publish(items(1000, start=2))
    handler.wait_for(lambda: False, 0.3)  # let the monitor queue them
    handler.release.set()
    scope.stop_monitoring()
    stats = scope.stats()
    # The limit bounds all that is held, the event in delivery included (issue 13, item 12).
    assert stats.queue_overflow == 901 and handler.lost == 901
    assert [i.process_id for i in handler.items] == [1, *range(903, 1002)]  # oldest dropped


def test_a_failing_source_ends_the_session_and_tells_the_handler(
    scope: ApplicationScope, caplog: pytest.LogCaptureFixture
) -> None:
    threads, fds = set(threading.enumerate()), open_fds()
    handler = Collector()
    source = start_on(handler, FailingSource(), "p")
    source.publish(items(100))
    error = OSError(9, "Bad file descriptor")
    source.fail(error)
    assert handler.wait_for(lambda: bool(handler.errors), 5), "on_error was not called"
    assert handler.errors == [error]
    assert [i.process_id for i in handler.items] == list(range(1, 101))  # all, before the news
    assert not scope.is_monitoring
    assert scope.stats().error is error and scope.stats().total == 100
    for t in set(threading.enumerate()) - threads:
        t.join(5)
    assert set(threading.enumerate()) == threads
    assert open_fds() == fds
    assert source.closed == 1
    assert "procobsrv-monitor stopped on an error" in caplog.text  # with its traceback
    scope.stop_monitoring()  # still idempotent
    assert source.closed == 1
    assert scope.start_monitoring(source=ScriptedSource()) is True  # a fresh start works
    scope.stop_monitoring()
    assert scope.stats().error is None


class Restarts(Collector):
    """Starts monitoring again from on_error, with a healthy source."""

    def __init__(self) -> None:
        super().__init__()
        self.replacement = ScriptedSource()
        self.restarted: bool | None = None

    def on_error(self, error: BaseException, param: Any) -> None:
        self.restarted = ApplicationScope.get_instance().start_monitoring(
            "again", source=self.replacement
        )
        super().on_error(error, param)


def test_the_handler_may_start_monitoring_again_from_on_error(scope: ApplicationScope) -> None:
    handler = Restarts()
    source = start_on(handler, FailingSource())
    source.fail(RuntimeError("driver unloaded"))
    assert handler.wait_for(lambda: bool(handler.errors), 5)
    assert handler.restarted is True and scope.is_monitoring
    handler.replacement.publish(items(3, start=500))
    scope.stop_monitoring()
    assert [i.process_id for i in handler.items] == [500, 501, 502]
    assert handler.params == ["again"] * 3
    assert (source.closed, handler.replacement.closed) == (1, 1)


def test_default_on_error_logs_the_reason(
    scope: ApplicationScope, caplog: pytest.LogCaptureFixture
) -> None:
    source = start_on(StopsItself(), FailingSource())  # does not override on_error
    source.fail(RuntimeError("driver unloaded"))
    assert wait_until(lambda: "process monitoring stopped: driver unloaded" in caplog.text, 5), (
        caplog.text
    )
    assert not scope.is_monitoring
