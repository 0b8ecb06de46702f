"""What the Platform record says about the system: real-time threads and fork()."""

from __future__ import annotations

import pytest

from procobsrv.errors import MonitorError
from procobsrv.linux import PLATFORM as LINUX
from procobsrv.linux.fork import at_fork_in_child, close_inherited
from procobsrv.linux.realtime import realtime_threads
from procobsrv.platform import no_fork, no_realtime_threads, not_open, nothing_inherited
from procobsrv.windows import PLATFORM as WINDOWS


def test_linux_provides_realtime_threads_and_the_fork_hooks() -> None:
    assert LINUX.realtime_threads is realtime_threads
    assert LINUX.at_fork_in_child is at_fork_in_child
    assert LINUX.close_inherited is close_inherited


def test_a_system_without_realtime_threads_or_fork_gets_the_neutral_defaults() -> None:
    assert WINDOWS.realtime_threads is no_realtime_threads
    assert WINDOWS.at_fork_in_child is no_fork
    assert WINDOWS.close_inherited is nothing_inherited
    with pytest.raises(MonitorError, match="Linux only"), WINDOWS.realtime_threads():
        pytest.fail("the block must not run")
    called: list[str] = []
    WINDOWS.at_fork_in_child(lambda: called.append("hook"))
    WINDOWS.close_inherited([0, 1, 2])  # closes nothing: stdin, stdout, stderr stay open
    assert called == []


def test_not_open_is_the_one_message_of_every_source() -> None:

    error = not_open("eBPF")
    assert isinstance(error, MonitorError) and str(error) == "the eBPF source is not open"
