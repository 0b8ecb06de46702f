"""A process's pid and mount namespaces as /proc tells them (the connector source's view).

The kernel program reads them in the kernel (bpf/procobsrv.bpf.c ``read_namespaces``); the
connector's events carry only host pids, so here they come from ``/proc/PID/ns/{pid,mnt}``
(a readlink each: ``pid:[4026531836]``, no file descriptor) and the ``NStgid`` line of
``/proc/PID/status`` (its tgid in each namespace from /proc's down to its own). A process
that is gone (or a zombie: its namespaces are released at exit) gives None, as does one
whose namespaces this process may not read (another user's, without CAP_SYS_PTRACE).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

#: The line of /proc/PID/status listing the process's tgid in each pid namespace.
NSTGID: Final = b"NStgid:"


@dataclass(frozen=True, slots=True)
class Namespaces:
    """Where a process sits in the pid and mount namespaces (None: not known)."""

    #: Its tgid in its own pid namespace.
    ns_pid: int | None = None
    #: Its parent's tgid there; 0 when the parent lies outside that namespace.
    ns_ppid: int | None = None
    #: The inode of its pid namespace.
    pid_ns: int | None = None
    #: The inode of its mount namespace.
    mnt_ns: int | None = None


UNKNOWN: Final = Namespaces()


def ns_inode(pid: int | str, kind: str) -> int | None:
    """The inode of the process's namespace of this kind (``pid``, ``mnt``...): what
    ``os.stat(f"/proc/{pid}/ns/{kind}").st_ino`` gives, read from the link's text."""
    try:
        link = os.readlink(f"/proc/{pid}/ns/{kind}")  # e.g. "pid:[4026531836]"
    except OSError:
        return None
    try:
        return int(link[link.index("[") + 1 : -1])
    except ValueError:
        return None


def parse_ns_tgids(line: bytes) -> tuple[int, ...]:
    """The tgids of an ``NStgid:`` line of /proc/PID/status, /proc's namespace first."""
    try:
        return tuple(int(n) for n in line[len(NSTGID) :].split())
    except ValueError:
        return ()


def read_ns_tgids(pid: int) -> tuple[int, ...]:
    """``NStgid`` of /proc/PID/status; () when the process is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(NSTGID):
                    return parse_ns_tgids(line)
    except OSError:
        pass
    return ()


_proc_pid_ns: list[int | None] = []


def proc_pid_ns() -> int | None:
    """The pid namespace whose numbers /proc shows (this process's: read once)."""
    if not _proc_pid_ns:
        _proc_pid_ns.append(ns_inode("self", "pid"))
    return _proc_pid_ns[0]


def read_namespaces(
    pid: int,
    ppid: int,
    ns_tgids: Sequence[int] | None = None,
    parent: Namespaces | None = None,
    *,
    mount_of_parent: bool = False,
) -> Namespaces:
    """The namespaces of ``pid`` (whose parent is ``ppid``) as /proc tells them now.

    ``ns_tgids``: its ``NStgid``, when the caller read /proc/PID/status anyway (None: read
    it here if needed); ``parent``: the parent's namespaces, when known (else read here if
    needed). ``mount_of_parent``: a fork, which takes its parent's mount namespace (only
    clone(CLONE_NEWNS) gives it another) unless it is in another pid namespace than the
    parent's (namespaces being made: read it).

    Each readlink costs about 8 us here (a /proc path walk), so none is made that the
    status line already answers: one level in NStgid is /proc's own pid namespace.
    """
    own = proc_pid_ns()
    if ns_tgids is not None and len(ns_tgids) == 1 and own is not None:
        pid_ns = own
    else:
        read = ns_inode(pid, "pid")
        if read is None:  # gone, a zombie, or not ours to read
            return UNKNOWN
        pid_ns = read
    if mount_of_parent and parent is not None and parent.pid_ns == pid_ns:
        mnt_ns = parent.mnt_ns
    else:  # an exec, or a fork into a new pid namespace: a container being made
        mnt_ns = ns_inode(pid, "mnt")
    if pid_ns == own:
        return Namespaces(pid, ppid, pid_ns, mnt_ns)
    if ns_tgids is None:
        ns_tgids = read_ns_tgids(pid)
    if len(ns_tgids) < 2:  # gone meanwhile (or a /proc of another namespace: no guess)
        return Namespaces(None, None, pid_ns, mnt_ns)
    return Namespaces(ns_tgids[-1], _parent_there(pid_ns, ppid, parent), pid_ns, mnt_ns)


def _parent_there(pid_ns: int, ppid: int, parent: Namespaces | None) -> int | None:
    """The parent's tgid in the child's pid namespace ``pid_ns``. A parent's namespace is
    the child's or an ancestor of it (a child is made in the forker's namespace or a new one
    below it; an orphan goes to a reaper in the same or an ancestor namespace): another
    namespace means the parent is outside, where the child's getppid() says 0."""
    if parent is None or parent.pid_ns is None:
        there = ns_inode(ppid, "pid")
        if there is None:
            return None
        if there != pid_ns:
            return 0
        tgids = read_ns_tgids(ppid)
        return tgids[-1] if tgids else None
    if parent.pid_ns != pid_ns:
        return 0
    return parent.ns_pid
