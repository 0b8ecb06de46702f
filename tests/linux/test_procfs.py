"""linux/procfs.py's /proc readers, on real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from procobsrv.linux import procfs
from tests.fakes.fd_limits import run_python

#: A pid no process has: above the kernel's largest (pid_max is at most 2**22).
NO_SUCH_PID = 2**22 + 1


def test_this_process_is_read_as_it_is() -> None:
    pid = os.getpid()
    assert procfs.read_parent(pid) == os.getppid()
    assert procfs.read_image(pid) == os.path.realpath(f"/proc/{pid}/exe")
    start = procfs.read_start_ns(pid)
    assert start is not None and 0 < start <= time.monotonic_ns()


def test_a_gone_process_reads_as_none() -> None:
    assert procfs.read_parent(NO_SUCH_PID) is None
    assert procfs.read_start_ns(NO_SUCH_PID) is None
    assert procfs.read_command_line(NO_SUCH_PID) is None


def test_a_command_name_with_parentheses_and_spaces_does_not_shift_the_fields(
    tmp_path: Path,
) -> None:
    """/proc/PID/stat's field 2 is the command name in parentheses, spaces and ')' allowed:
    the fields are counted from the last ')'."""
    tricky = tmp_path / "a) b (c"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", tricky)
    child = subprocess.Popen([str(tricky), "5"])
    try:
        deadline = time.monotonic() + 5
        while procfs.read_image(child.pid) != str(tricky) and time.monotonic() < deadline:
            time.sleep(0.01)  # until the child has exec'd
        assert procfs.read_parent(child.pid) == os.getpid()
        start = procfs.read_start_ns(child.pid)
        assert start is not None and abs(start - time.monotonic_ns()) < 10 * 10**9
    finally:
        child.kill()
        child.wait()


@pytest.mark.kernel
@pytest.mark.usefixtures("connector")
def test_a_proc_read_that_fails_for_lack_of_fds_is_counted_and_warned_once() -> None:
    """Monitoring runs, then every fd is taken: /proc/PID/cmdline cannot be opened. That
    must be counted and logged (once), not pass for a process that was already gone."""
    run = run_python("""
        import logging
        from procobsrv import ApplicationScope, EventKind
        from tests.fakes.collector import Collector
        from tests.fakes.session import running_source

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        limit_fds(64)
        collector = Collector()
        scope = ApplicationScope.get_instance(collector)
        scope.start_monitoring(source="connector")  # the source that reads /proc at exec
        source = running_source(scope)

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
