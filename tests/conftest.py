"""Shared test policy: outside CI a missing tool or kernel feature skips with a reason;
in CI (CI=true) it fails, because CI must run everything."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"required in CI but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Path of an executable the test needs."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (scripts/setup-system installs it)")
        raise AssertionError("unreachable")
    return path


# -- the real kernel --------------------------------------------------------------------
import threading  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

from procobsrv import ApplicationScope, CallbackHandler, EventKind, MonitorError, QueuedItem  # noqa: E402

_connector_problem: list[str] = []


def require_connector() -> None:
    """Skip (locally) or fail (CI) when the kernel's process-events connector is unusable."""
    if not _connector_problem:
        from procobsrv.linux import ConnectorSource

        source = ConnectorSource()
        try:
            source.open()
            _connector_problem.append("")
        except MonitorError as exc:
            _connector_problem.append(str(exc))
        finally:
            source.close()
    if _connector_problem[0]:
        unavailable(f"process-events connector: {_connector_problem[0]}")


def break_connector_socket(fd: int) -> None:
    """Make a running monitor's receive fail for real: its netlink socket's fd becomes a pipe.

    A poll() already asleep keeps waiting on the old socket, so a process event is started
    to wake it; the receive that follows finds the pipe (ENOTSOCK).
    """
    import subprocess

    r, w = os.pipe()
    os.dup2(r, fd)
    os.close(r)
    os.close(w)
    subprocess.run(["/bin/true"], check=True)


class Collector(CallbackHandler):
    """Records every event; tests wait for the ones they expect."""

    def __init__(self) -> None:
        self.items: list[QueuedItem] = []
        self.lost = 0
        self.params: list[Any] = []
        self.errors: list[BaseException] = []
        self._changed = threading.Condition()

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        with self._changed:
            self.items.append(item)
            self.params.append(param)
            self._changed.notify_all()

    def on_events_lost(self, count: int, param: Any) -> None:
        with self._changed:
            self.lost += count
            self._changed.notify_all()

    def on_error(self, error: BaseException, param: Any) -> None:
        with self._changed:
            self.errors.append(error)
            self._changed.notify_all()

    def of(self, pids: int | set[int], kind: EventKind | None = None) -> list[QueuedItem]:
        wanted = {pids} if isinstance(pids, int) else pids
        with self._changed:
            return [i for i in self.items if i.process_id in wanted and kind in (None, i.kind)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def wait_exit(self, pid: int, timeout: float = 10.0) -> QueuedItem:
        assert self.wait_for(lambda: bool(self.of(pid, EventKind.EXITED)), timeout), (
            f"no EXITED event for pid {pid}; saw {self.of(pid)}"
        )
        return self.of(pid, EventKind.EXITED)[0]


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A running ApplicationScope on the real kernel, feeding a Collector."""
    require_connector()
    handler = Collector()
    scope = ApplicationScope.get_instance(handler)
    assert scope.start_monitoring("test-param")
    try:
        yield handler
    finally:
        scope.stop_monitoring()
