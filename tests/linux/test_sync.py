"""linux/sync.py: every wait is a poll (fd numbers above FD_SETSIZE), and running out of
fds at start is a MonitorError naming the limit (sync.out_of_fds) that leaks nothing."""

from __future__ import annotations

import pytest

from tests.fakes.fd_limits import run_python

pytestmark = pytest.mark.kernel


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
        from tests.fakes.session import running_source

        event = EventFd()
        assert event.wait_handle > 1024 and not event.is_set()
        event.set()
        assert event.is_set()
        event.close()

        collector = Collector()
        scope = ApplicationScope.get_instance(collector)
        scope.start_monitoring()  # the socket and eventfds all get numbers above 1024
        assert running_source(scope).wait_handle > 1024
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
