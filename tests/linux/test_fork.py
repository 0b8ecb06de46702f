"""linux/fork.py: the hook runs in a forked child only; inherited fds are closed there."""

from __future__ import annotations

import os

from procobsrv.linux.fork import at_fork_in_child, close_inherited

#: While set, the registered hook reports to this pipe (a registration lasts the process's
#: life, so later forks in the test session find it disarmed).
_report_to: list[int] = []


def _hook() -> None:
    if _report_to:
        os.write(_report_to[0], str(os.getpid()).encode())


def test_the_hook_runs_in_the_child_of_a_fork_and_not_in_the_parent() -> None:
    read_end, write_end = os.pipe()
    at_fork_in_child(_hook)
    _report_to.append(write_end)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the hook has already run here
            os._exit(0)
        _, status = os.waitpid(pid, 0)
    finally:
        _report_to.clear()
        os.close(write_end)
    with os.fdopen(read_end, "rb") as reports:
        assert reports.read() == str(pid).encode()  # once, from the child, not the parent
    assert os.waitstatus_to_exitcode(status) == 0


def test_close_inherited_closes_each_fd_and_passes_over_a_closed_one() -> None:
    fds = [*os.pipe(), *os.pipe()]
    os.close(fds[1])  # already closed: no error
    close_inherited(fds)
    for fd in fds:
        try:
            os.fstat(fd)
        except OSError:
            continue
        raise AssertionError(f"fd {fd} is still open")
