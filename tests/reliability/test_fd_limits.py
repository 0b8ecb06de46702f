"""File descriptors: many of them (numbers above FD_SETSIZE), and too few of them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import require_connector

pytestmark = pytest.mark.kernel


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (its own fd table and limits); must print OK."""
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=timeout)  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip().endswith("OK"), run.stdout + run.stderr
    return run


def test_monitoring_works_with_more_than_1024_open_files() -> None:
    """select() cannot take fd numbers >= 1024 (FD_SETSIZE): every wait must be a poll."""
    require_connector()
    run_python("""
        import os, resource, subprocess
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 4096:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
        held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
        assert min(held) < 1024 < max(held)

        from procobsrv import ApplicationScope, EventKind
        from procobsrv.linux.sync import EventFd
        from tests.conftest import Collector

        event = EventFd()
        assert event.wait_handle > 1024 and not event.is_set()
        event.set()
        assert event.is_set()
        event.close()

        collector = Collector()
        scope = ApplicationScope.get_instance(collector)
        scope.start_monitoring()  # the socket and eventfds all get numbers above 1024
        assert scope._session.source.wait_handle > 1024
        child = subprocess.Popen(["/bin/true", "many-fds"])
        child.wait()
        exited = collector.wait_exit(child.pid)
        scope.stop_monitoring()
        assert exited.command_line == ["/bin/true", "many-fds"], exited
        print("OK")
    """)
