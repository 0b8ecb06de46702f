"""CustomThread: runs ``run`` on a thread of its own until its shutdown event is set."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from procobsrv.host import current_platform
from procobsrv.threads import CustomThread, FunctionThread

#: Long enough for a thread to start and act on a loaded machine; a hang fails the test.
WAIT_S = 5.0


class Waiter(CustomThread):
    """Waits on its shutdown event; records on which thread it ran."""

    def __init__(self, fail: BaseException | None = None) -> None:
        super().__init__(current_platform(), "test-waiter")
        self.fail = fail
        self.ran_on: threading.Thread | None = None
        self.was_current = False
        self.running = threading.Event()

    def run(self) -> None:
        self.ran_on = threading.current_thread()
        self.was_current = self.is_current()
        self.running.set()
        if self.fail is not None:
            raise self.fail
        waiter = self.platform.new_waiter([self.shutdown.wait_handle])
        try:
            waiter.wait(None)
        finally:
            waiter.close()


def test_run_goes_on_a_named_daemon_thread_until_stop() -> None:
    worker = Waiter()
    exits: list[str] = []
    worker.on_exit = lambda: exits.append(threading.current_thread().name)
    worker.start()
    try:
        assert worker.running.wait(WAIT_S) and worker.is_alive()
        assert worker.ran_on is not threading.current_thread() and worker.ran_on is not None
        assert worker.ran_on.name == "test-waiter" and worker.ran_on.daemon
        assert worker.was_current and not worker.is_current()
    finally:
        worker.stop()
        worker.close()
    assert not worker.is_alive() and worker.error is None
    assert exits == ["test-waiter"]  # on the thread itself, as its last act


def test_an_error_in_run_is_kept_and_logged_and_on_exit_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = Waiter(fail=ValueError("broken"))
    exited = threading.Event()
    worker.on_exit = exited.set
    worker.start()
    assert exited.wait(WAIT_S)
    worker.stop()
    worker.close()
    assert isinstance(worker.error, ValueError) and str(worker.error) == "broken"
    assert "test-waiter stopped on an error" in caplog.text


def test_stop_before_start_only_sets_the_event() -> None:
    worker = Waiter()
    worker.stop()
    assert not worker.is_alive() and not worker.is_current()
    worker.close()


def test_every_thread_procobsrv_starts_is_a_custom_thread() -> None:
    # One thread base class: only threads.py creates a threading.Thread.
    package = Path(__file__).resolve().parents[1] / "src" / "procobsrv"
    raw = [
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.name != "threads.py" and "threading.Thread(" in path.read_text()
    ]
    assert raw == []


def test_a_function_thread_runs_its_function_and_ends_with_it() -> None:
    release = threading.Event()
    ran: list[str] = []

    def work() -> None:
        ran.append(threading.current_thread().name)
        release.wait(5)

    worker = FunctionThread(current_platform(), "procobsrv-test-function", work)
    assert not worker.started and worker.join(0)
    worker.start()
    assert worker.started and not worker.join(0.05) and worker.is_alive()
    release.set()
    assert worker.join(5) and ran == ["procobsrv-test-function"]
    worker.close()  # no shutdown event was made: nothing to release
