"""linux/procfs.py's /proc readers, on real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from procobsrv.linux import procfs

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
