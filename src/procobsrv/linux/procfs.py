"""What the connector does not say: image, command line, uid, parent, read from /proc.

Connector events carry only numbers. The rest must be read from ``/proc/<pid>`` at once,
and a short-lived process may already be gone: every reader returns None then. The
:class:`ProcessTable` remembers what was learned so that an exit still names its program,
and a fork inherits its parent's image without a read (a forked child runs the same program).
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

_O_RDONLY_CLOEXEC = os.O_RDONLY | os.O_CLOEXEC
#: open() errors that say nothing about the process: this process (or the system) has no fd
#: left. Passed on to ProcessTable, which counts them, instead of passing for "gone".
_NO_FDS = (errno.EMFILE, errno.ENFILE)


@dataclass(slots=True)
class ProcessInfo:
    """What we know about one live process."""

    image: str | None
    command_line: list[str] | None
    uid: int | None
    parent_id: int
    start_ns: int


def _read(path: str, size: int = 4096) -> bytes | None:
    """The whole file, ``size`` bytes per read (most command lines fit one page: a larger
    first read would allocate, and free, a large buffer per exec). Raises OSError only when
    no file descriptor is left."""
    try:
        fd = os.open(path, _O_RDONLY_CLOEXEC)
    except OSError as exc:
        if exc.errno in _NO_FDS:
            raise
        return None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, size)
            if not chunk:
                break
            chunks.append(chunk)
            if len(chunk) < size:
                break
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_image(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:  # gone, a zombie, a kernel thread, or not ours to read
        return None


def read_command_line(pid: int) -> list[str] | None:
    data = _read(f"/proc/{pid}/cmdline")
    if not data:
        return None
    return [os.fsdecode(arg) for arg in data.rstrip(b"\0").split(b"\0")]


def read_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def read_parent(pid: int) -> int | None:
    """The parent pid, from /proc/<pid>/stat."""
    data = _read(f"/proc/{pid}/stat", 4096)
    if not data:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def read_process(pid: int, parent_id: int | None = None, start_ns: int = 0) -> ProcessInfo:
    """Everything /proc tells about a process now (fields None where it is gone).

    ``start_ns`` is the kernel timestamp of the fork when we saw it, else 0: /proc's start
    time is on another clock and in jiffies, and mixing the two would give one process two keys.
    """
    if parent_id is None:
        parent_id = read_parent(pid) or 0
    return ProcessInfo(read_image(pid), read_command_line(pid), read_uid(pid), parent_id, start_ns)


class ProcessTable:
    """Live processes we have heard of, by pid; bounded so that lost exits cannot grow it."""

    def __init__(self, read_proc: bool = True, capacity: int = 65536) -> None:
        self._known: dict[int, ProcessInfo] = {}
        self._read_proc = read_proc
        self._capacity = capacity
        #: /proc reads that failed because no file descriptor was left (EMFILE/ENFILE).
        self.fd_exhausted = 0

    def __len__(self) -> int:
        return len(self._known)

    def _remember(self, pid: int, info: ProcessInfo) -> ProcessInfo:
        known = self._known
        known.pop(pid, None)
        if len(known) >= self._capacity:
            del known[next(iter(known))]  # the oldest entry: its exit was most likely lost
        known[pid] = info
        return info

    def _lookup(self, pid: int) -> ProcessInfo | None:
        info = self._known.get(pid)
        if info is None and self._read_proc:
            info = self._remember(pid, self._read_process(pid))
        return info

    def _read_process(
        self, pid: int, parent_id: int | None = None, start_ns: int = 0
    ) -> ProcessInfo:
        try:
            return read_process(pid, parent_id, start_ns)
        except OSError:  # no fd left to open /proc/<pid>/... with (_read passes only that on)
            self.fd_exhausted += 1
            if self.fd_exhausted == 1:
                log.warning(
                    "cannot read /proc/%d: no file descriptor left (EMFILE/ENFILE); command "
                    "lines will be missing until fds are free again: raise `ulimit -n`",
                    pid,
                )
            return ProcessInfo(read_image(pid), None, read_uid(pid), parent_id or 0, start_ns)

    def forked(self, pid: int, parent_id: int, start_ns: int) -> ProcessInfo:
        parent = self._lookup(parent_id)
        if parent is None:
            info = ProcessInfo(None, None, None, parent_id, start_ns)
        else:
            info = ProcessInfo(parent.image, parent.command_line, parent.uid, parent_id, start_ns)
        return self._remember(pid, info)

    def executed(self, pid: int) -> ProcessInfo:
        before = self._known.get(pid)
        if not self._read_proc:
            info = before or ProcessInfo(None, None, None, 0, 0)
        elif before is None:
            info = self._read_process(pid)
        else:
            info = self._read_process(pid, before.parent_id, before.start_ns)
            if info.uid is None:
                info.uid = before.uid
        return self._remember(pid, info)

    def exited(self, pid: int) -> ProcessInfo | None:
        return self._known.pop(pid, None)
