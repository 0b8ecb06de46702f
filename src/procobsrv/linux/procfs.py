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
import time
from dataclasses import dataclass
from typing import Final

from ..events import EventKind, QueuedItem
from .namespaces import NSTGID, UNKNOWN, Namespaces, parse_ns_tgids, read_namespaces

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
    euid: int | None = None
    comm: str | None = None
    cwd: str | None = None
    cgroup: str | None = None
    namespaces: Namespaces = UNKNOWN


#: Bytes per read of a /proc file: a page, which most command lines fit.
_READ_SIZE = 4096
#: cgroup paths whose id is remembered; beyond it the cache starts afresh.
_CGROUP_CACHE_LIMIT = 4096
#: /proc/<pid>/stat fields after the command name, counted from 0 (field 3, the state, is 0).
_STAT_STATE = 0
_STAT_PPID = 1
_STAT_THREADS = 17
_STAT_STARTTIME = 19
NS_PER_S: Final = 1_000_000_000
#: Processes a table remembers (the connector's ProcessTable, the eBPF decoder's programs);
#: beyond it the oldest are forgotten first.
REMEMBERED_PROCESSES: Final = 65536


def _read(path: str, size: int = _READ_SIZE) -> bytes | None:
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


def read_owner(pid: int) -> int | None:
    """The owner of /proc/PID, its effective uid: known without opening a file."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def read_command_line(pid: int) -> list[str] | None:
    data = _read(f"/proc/{pid}/cmdline")
    if not data:
        return None
    return [os.fsdecode(arg) for arg in data.rstrip(b"\0").split(b"\0")]


def read_status(pid: int) -> tuple[str | None, int | None, int | None, tuple[int, ...] | None]:
    """(comm, real uid, effective uid, NStgid: its tgid in each pid namespace from /proc's
    down to its own) from /proc/<pid>/status."""
    data = _read(f"/proc/{pid}/status")
    comm = uid = euid = ns_tgids = None
    for line in (data or b"").splitlines():
        if line.startswith(b"Name:"):
            comm = os.fsdecode(line[5:].strip())
        elif line.startswith(b"Uid:"):
            ids = line.split()
            if len(ids) >= 3:
                uid, euid = int(ids[1]), int(ids[2])
        elif line.startswith(NSTGID):
            ns_tgids = parse_ns_tgids(line)
            break
    return comm, uid, euid, ns_tgids


def read_cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def read_cgroup(pid: int) -> str | None:
    """The cgroup v2 path, e.g. ``/system.slice/ssh.service``."""
    for line in (_read(f"/proc/{pid}/cgroup") or b"").splitlines():
        if line.startswith(b"0::"):
            return os.fsdecode(line[3:])
    return None


def cgroup2_root() -> str | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrid)."""
    for line in (_read("/proc/self/mounts") or b"").splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == b"cgroup2":
            return os.fsdecode(fields[1])
    return None


_cgroup_ids: dict[str, int] = {}
_cgroup_root: list[str | None] = []


def cgroup_id(path: str | None) -> int | None:
    """The cgroup v2 id of a cgroup path: the inode of its directory (cached; None if gone)."""
    if path is None:
        return None
    known = _cgroup_ids.get(path)
    if known is None:
        if not _cgroup_root:
            _cgroup_root.append(cgroup2_root())
        if _cgroup_root[0] is None:
            return None
        if len(_cgroup_ids) > _CGROUP_CACHE_LIMIT:
            _cgroup_ids.clear()
        try:
            known = _cgroup_ids[path] = os.stat(_cgroup_root[0] + path.rstrip("/")).st_ino
        except OSError:
            return None
    return known


def _stat_fields(pid: int) -> list[bytes]:
    """/proc/<pid>/stat's fields after the command name (the state first); [] if unreadable."""
    data = _read(f"/proc/{pid}/stat")
    # The command name (field 2) may hold spaces and parentheses: split after the last ')',
    # skipping it and the space that follows.
    return data[data.rfind(b")") + len(b") ") :].split() if data else []


def read_start_ns(pid: int) -> int | None:
    """The process's start on CLOCK_MONOTONIC, from /proc/<pid>/stat (a clock tick's precision)."""
    fields = _stat_fields(pid)
    try:
        ticks = int(fields[_STAT_STARTTIME])
    except (IndexError, ValueError):
        return None
    # stat counts from boot including suspend (CLOCK_BOOTTIME); events use CLOCK_MONOTONIC
    boot_offset = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    return ticks * NS_PER_S // _CLK_TCK - boot_offset


_CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Two start times of one process read from /proc and from the kernel differ by less than this.
START_NS_TOLERANCE = 2 * NS_PER_S // _CLK_TCK + NS_PER_S // 1000


def read_state(pid: int) -> tuple[str, int] | None:
    """(state letter, threads in the group) from /proc/<pid>/stat; None if it is gone."""
    fields = _stat_fields(pid)
    try:
        return fields[_STAT_STATE].decode(), int(fields[_STAT_THREADS])
    except (IndexError, ValueError):
        return None


def group_ended(pid: int) -> bool:
    """Whether the thread group led by ``pid`` has no live thread left: it is gone, or only
    its leader's zombie (Z) is left. The kernel reports a thread's exit after releasing it,
    so the count read while handling that event already leaves it out."""
    state = read_state(pid)
    return state is None or (state[0] in "ZX" and state[1] <= 1)


def read_parent(pid: int) -> int | None:
    """The parent pid, from /proc/<pid>/stat."""
    fields = _stat_fields(pid)
    try:
        return int(fields[_STAT_PPID])
    except (IndexError, ValueError):
        return None


def read_process(
    pid: int,
    parent_id: int | None = None,
    start_ns: int = 0,
    parent_namespaces: Namespaces | None = None,
) -> ProcessInfo:
    """Everything /proc tells about a process now (fields None where it is gone).

    ``start_ns`` is the kernel timestamp of the fork when we saw it, else 0: /proc's start
    time is on another clock and in jiffies, and mixing the two would give one process two keys.
    ``parent_namespaces``: the parent's, when known (spares reading them for a process in a
    container).
    """
    if parent_id is None:
        parent_id = read_parent(pid) or 0
    comm, uid, euid, ns_tgids = read_status(pid)
    return ProcessInfo(
        read_image(pid),
        read_command_line(pid),
        uid,
        parent_id,
        start_ns,
        euid,
        comm,
        read_cwd(pid),
        read_cgroup(pid),
        read_namespaces(pid, parent_id, ns_tgids, parent_namespaces),
    )


def snapshot() -> dict[int, ProcessInfo]:
    """Every process running now, as /proc shows it (``start_ns`` from /proc/<pid>/stat).

    Read when monitoring starts, so that the exit of a process that was already running
    still names its program, and a process tree can know it.
    """
    running: dict[int, ProcessInfo] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        start = read_start_ns(pid)
        if start is None:
            continue  # gone meanwhile
        info = read_process(pid, start_ns=start)
        if info.image is None and info.command_line is None:
            continue  # a kernel thread (or gone): no program to name
        running[pid] = info
    return running


class ProcessTable:
    """Live processes we have heard of, by pid; bounded so that lost exits cannot grow it."""

    def __init__(self, read_proc: bool = True, capacity: int = REMEMBERED_PROCESSES) -> None:
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

    def _namespaces_of(self, pid: int) -> Namespaces | None:
        known = self._known.get(pid)
        return None if known is None else known.namespaces

    def _read_process(
        self, pid: int, parent_id: int | None = None, start_ns: int = 0
    ) -> ProcessInfo:
        parent = None if parent_id is None else self._namespaces_of(parent_id)
        try:
            return read_process(pid, parent_id, start_ns, parent)
        except OSError:  # no fd left to open /proc/<pid>/... with (_read passes only that on)
            self.fd_exhausted += 1
            if self.fd_exhausted == 1:
                log.warning(
                    "cannot read /proc/%d: no file descriptor left (EMFILE/ENFILE); command "
                    "lines will be missing until fds are free again: raise `ulimit -n`",
                    pid,
                )
            # What needs no fd: the image (readlink) and the owner of /proc/PID (its euid).
            return ProcessInfo(
                read_image(pid), None, None, parent_id or 0, start_ns, euid=read_owner(pid)
            )

    def forked(self, pid: int, parent_id: int, start_ns: int) -> ProcessInfo:
        """A new process: its parent's program (a fork runs it) and mount namespace (only
        clone(CLONE_NEWNS) makes another: the exec reads its own), and its own pid
        namespace (one readlink: a fork after unshare(CLONE_NEWPID) is in a new one)."""
        parent = self._lookup(parent_id)
        if parent is None:
            info = ProcessInfo(None, None, None, parent_id, start_ns)
        else:
            info = ProcessInfo(
                parent.image,
                parent.command_line,
                parent.uid,
                parent_id,
                start_ns,
                parent.euid,
                parent.comm,
                parent.cwd,
                parent.cgroup,
            )
        if self._read_proc:
            info.namespaces = read_namespaces(
                pid,
                parent_id,
                None,
                None if parent is None else parent.namespaces,
                mount_of_parent=True,
            )
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
                info.uid, info.euid = before.uid, before.euid
        return self._remember(pid, info)

    def seed(self, running: dict[int, ProcessInfo]) -> None:
        """Know the processes already running (a :func:`snapshot`)."""
        for pid, info in running.items():
            if pid not in self._known:  # an event since the subscription knows better
                self._remember(pid, info)

    def group_ended(self, pid: int) -> bool:
        """:func:`group_ended`; with no fd left to read /proc it is counted and taken as
        ended (the leader's exit is then reported as the process's, as before threads were
        looked at)."""
        try:
            return group_ended(pid)
        except OSError:
            self.fd_exhausted += 1
            return True

    def restore(self, pid: int, info: ProcessInfo) -> None:
        """Know ``pid`` again as ``info`` (its exit turned out not to be one)."""
        self._remember(pid, info)

    def exited(self, pid: int) -> ProcessInfo | None:
        return self._known.pop(pid, None)


def as_created(running: dict[int, ProcessInfo]) -> list[QueuedItem]:
    """A snapshot as CREATED items (what ``ProcessTree.seed`` takes)."""
    epoch_offset = time.time_ns() - time.monotonic_ns()
    items = []
    for pid, info in running.items():
        start = info.start_ns
        items.append(
            QueuedItem(
                EventKind.CREATED,
                pid,
                info.parent_id,
                (start + epoch_offset) / NS_PER_S,
                start,
                info.image,
                info.command_line,
                uid=info.uid,
                start_ns=start,
                euid=info.euid,
                comm=info.comm,
                cwd=info.cwd,
                cgroup_id=cgroup_id(info.cgroup),
                cgroup=info.cgroup,
                ns_pid=info.namespaces.ns_pid,
                ns_ppid=info.namespaces.ns_ppid,
                pid_ns=info.namespaces.pid_ns,
                mnt_ns=info.namespaces.mnt_ns,
            )
        )
    return items
