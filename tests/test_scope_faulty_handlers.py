"""Faulty handlers on the real kernel: raising, blocking, stopping itself, spawning processes."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Any

import pytest

from procobsrv import ApplicationScope, EventKind, QueuedItem
from tests.fakes.collector import Collector
from tests.fakes.connector import monitoring
from tests.fakes.gauges import open_fds, threads_now, wait_until

pytestmark = pytest.mark.kernel
CREATED, EXEC, EXITED = EventKind.CREATED, EventKind.EXEC, EventKind.EXITED


class RaisesOnExec(Collector):
    def __init__(self) -> None:
        super().__init__()
        self.raised = 0

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        super().on_process_event(item, param)
        if item.kind is EXEC:
            self.raised += 1
            raise RuntimeError(f"handler bug on pid {item.process_id}")


def test_raising_handler_is_logged_with_the_event_counted_and_delivery_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = RaisesOnExec()
    with monitoring(handler) as scope:
        children = [subprocess.Popen(["/bin/true"]) for _ in range(30)]
        for c in children:
            c.wait()
        pids = {c.pid for c in children}
        assert handler.wait_for(lambda: len(handler.of(pids, EXITED)) == 30)
    # Every exec raised, and the exit after it still arrived.
    assert len(handler.of(pids, EXEC)) == 30
    assert scope.stats().handler_errors == handler.raised >= 30
    # The first is logged with its event and traceback; the repeats are counted and
    # summarised in one line (issue 13, item 14), not logged once per event.
    first = [r for r in caplog.records if r.exc_info]
    assert len(first) == 1 and "handler bug on pid" in caplog.text
    assert "kind=<EventKind.EXEC: 'exec'>" in first[0].getMessage()
    assert f"RuntimeError {handler.raised - 1} more times ({handler.raised} in all)" in caplog.text


class BlocksOnce(Collector):
    """Blocks for ``seconds`` on the first event after ``arm``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.armed = threading.Event()
        self.inside = threading.Event()
        self.blocked_for = 0.0

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        if self.armed.is_set() and not self.inside.is_set():
            self.inside.set()
            began = time.monotonic()
            time.sleep(self.seconds)
            self.blocked_for = time.monotonic() - began
        super().on_process_event(item, param)


def test_handler_blocking_for_seconds_loses_nothing() -> None:
    handler = BlocksOnce(2.0)
    with monitoring(handler) as scope:
        handler.armed.set()
        subprocess.run(["/bin/true"], check=True)
        assert handler.inside.wait(5)
        children = [subprocess.Popen(["/bin/true"]) for _ in range(300)]
        for c in children:
            c.wait()
        # The monitor thread kept draining the kernel while the handler slept.
        assert wait_until(lambda: scope.stats().queued >= 900, 1.5)
        pids = {c.pid for c in children}
        assert handler.wait_for(lambda: len(handler.of(pids, EXITED)) == 300, 20)
    assert handler.blocked_for >= 2.0
    for kind in (CREATED, EXEC, EXITED):
        assert len(handler.of(pids, kind)) == 300
    assert handler.lost == 0 and scope.stats().lost == 0


class StopsOnExit42(Collector):
    def __init__(self) -> None:
        super().__init__()
        self.returned = threading.Event()

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        super().on_process_event(item, param)
        if item.kind is EXITED and item.exit_code == 42 and item.parent_id == os.getpid():
            ApplicationScope.get_instance().stop_monitoring()
            self.returned.set()


def test_stop_monitoring_inside_the_callback_on_the_real_kernel() -> None:
    threads, fds = threads_now(), open_fds()
    handler = StopsOnExit42()
    scope = ApplicationScope.get_instance(handler)
    assert scope.start_monitoring()
    load = [subprocess.Popen(["/bin/true"]) for _ in range(50)]  # events keep coming meanwhile
    subprocess.run(["sh", "-c", "exit 42"])
    for c in load:
        c.wait()
    assert handler.returned.wait(10)  # it returned: no deadlock
    assert not scope.is_monitoring
    assert wait_until(lambda: threads_now() == threads, 5)
    assert open_fds() == fds
    scope.stop_monitoring()  # idempotent afterwards


class SpawnsOnExit(Collector):
    """On the exit of chain link k (exit code 100+k), starts link k+1 from inside the callback."""

    LINKS = 20

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        super().on_process_event(item, param)
        code = item.exit_code
        if (
            item.kind is EXITED
            and item.parent_id == os.getpid()
            and code is not None
            and 100 <= code < 100 + self.LINKS
        ):
            subprocess.run(["sh", "-c", f"exit {code + 1}"], check=False)


def test_handler_starting_processes_itself() -> None:
    handler = SpawnsOnExit()
    with monitoring(handler):
        subprocess.run(["sh", "-c", "exit 100"], check=False)

        def codes() -> set[int]:
            return {
                i.exit_code
                for i in handler.items
                if i.kind is EXITED and i.parent_id == os.getpid() and i.exit_code is not None
            }

        assert handler.wait_for(lambda: 100 + SpawnsOnExit.LINKS in codes(), 20), sorted(codes())
    links = [
        i
        for i in handler.items
        if i.kind is EXITED
        and i.parent_id == os.getpid()
        and i.exit_code is not None
        and i.exit_code >= 100
    ]
    assert [i.exit_code for i in links] == list(range(100, 101 + SpawnsOnExit.LINKS))
    for link in links:  # the events of the processes the handler started are all there
        assert [i.kind for i in handler.of(link.process_id)] == [CREATED, EXEC, EXITED]
    assert handler.lost == 0
