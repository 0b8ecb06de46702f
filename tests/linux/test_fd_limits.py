"""File descriptors: many of them (numbers above FD_SETSIZE), and too few of them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.kernel


#: Helpers for the scripts below (each runs in an interpreter of its own).
PRELUDE = """
import os, resource

def limit_fds(soft):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

def take_every_fd():
    taken = []
    try:
        while True:
            taken.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        return taken
"""


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (its own fd table and limits); must print OK."""
    script = PRELUDE + textwrap.dedent(code)
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
    )
    assert run.returncode == 0 and run.stdout.strip().endswith("OK"), run.stdout + run.stderr
    return run


@pytest.mark.usefixtures("connector")
def test_monitoring_works_with_more_than_1024_open_files() -> None:
    """select() cannot take fd numbers >= 1024 (FD_SETSIZE): every wait must be a poll."""
    run_python("""
        import subprocess
        limit_fds(max(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
        held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
        assert min(held) < 1024 < max(held)

        from procobsrv import ApplicationScope, EventKind
        from procobsrv.linux.sync import EventFd
        from tests.fakes.collector import Collector

        event = EventFd()
        assert event.wait_handle > 1024 and not event.is_set()
        event.set()
        assert event.is_set()
        event.close()

        collector = Collector()
        scope = ApplicationScope.get_instance(collector)
        scope.start_monitoring()  # the socket and eventfds all get numbers above 1024
        assert scope._session.source.wait_handle > 1024
        child = subprocess.Popen(["/bin/sleep", "0.3"])  # alive while /proc is read
        child.wait()
        exited = collector.wait_exit(child.pid)
        scope.stop_monitoring()
        assert exited.command_line == ["/bin/sleep", "0.3"], exited
        print("OK")
    """)


@pytest.mark.usefixtures("connector")
def test_running_out_of_fds_at_start_is_a_monitor_error_that_leaks_nothing() -> None:
    """With 0 to 3 fds left (start needs a socket and three eventfds), each start fails at
    another step: a MonitorError saying what ran out and how to raise it, and every fd
    opened before the failure is released, over many attempts."""
    run_python("""
        import procobsrv.linux  # imported now: an import needs an fd as well
        from procobsrv import ApplicationScope, MonitorError
        from tests.fakes.collector import Collector

        limit_fds(64)
        scope = ApplicationScope.get_instance(Collector())
        before = sorted(os.listdir("/proc/self/fd"))
        messages = set()
        for attempt in range(50):
            free = attempt % 4
            fillers = take_every_fd()
            for fd in fillers[:free]:
                os.close(fd)
            try:
                scope.start_monitoring()
                raise AssertionError(f"started with {free} fds left")
            except MonitorError as exc:
                messages.add(str(exc))
            finally:
                for fd in fillers[free:]:
                    os.close(fd)
            assert sorted(os.listdir("/proc/self/fd")) == before, (attempt, free)
        assert scope.start_monitoring()  # and with fds to spare it works
        scope.stop_monitoring()
        assert len(messages) >= 2, messages  # the socket, then an eventfd
        for message in messages:
            assert "file descriptors" in message and "ulimit -n" in message, message
        print("OK")
    """)


@pytest.mark.usefixtures("connector")
def test_a_proc_read_that_fails_for_lack_of_fds_is_counted_and_warned_once() -> None:
    """Monitoring runs, then every fd is taken: /proc/PID/cmdline cannot be opened. That
    must be counted and logged (once), not pass for a process that was already gone."""
    run = run_python("""
        import logging
        from procobsrv import ApplicationScope, EventKind
        from tests.fakes.collector import Collector

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        limit_fds(64)
        collector = Collector()
        scope = ApplicationScope.get_instance(collector)
        scope.start_monitoring(source="connector")  # the source that reads /proc at exec
        source = scope._session.source

        def exec_of(*argv):
            pid = os.posix_spawn(argv[0], list(argv), os.environ)  # needs no fd of ours
            assert collector.wait_for(lambda: collector.of(pid, EventKind.EXEC))
            os.waitpid(pid, 0)
            return collector.of(pid, EventKind.EXEC)[0]

        fillers = take_every_fd()
        starved = [exec_of("/bin/sleep", "0.3"), exec_of("/bin/sleep", "0.31")]
        for fd in fillers:
            os.close(fd)
        fed = exec_of("/bin/sleep", "0.32")
        scope.stop_monitoring()
        assert [i.command_line for i in starved] == [None, None], starved
        assert starved[0].image == "/usr/bin/sleep"  # readlink needs no fd: still known
        assert fed.command_line == ["/bin/sleep", "0.32"], fed
        assert source.processes.fd_exhausted >= 2, source.processes.fd_exhausted
        print("OK")
    """)
    warnings = [line for line in run.stderr.splitlines() if line.startswith("WARNING")]
    first = [w for w in warnings if "file descriptor" in w and "/proc" in w]
    assert len(first) == 2, run.stderr  # the first one, then the total when monitoring stops
