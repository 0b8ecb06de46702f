"""Ring buffer records of the eBPF program -> QueuedItems, with what each process ran.

The decoder never raises: a record that is too short, names an unknown kind, or whose
lengths point outside it is counted in :attr:`Decoder.bad` and skipped. An exit record
carries no argv (the kernel has already freed the process's memory then): the image, argv,
cwd and script come from :class:`Programs`, which remembers each live process's exec (or
the /proc snapshot taken at start), keyed by pid and checked against its start time.
Events carry a cgroup id; its path comes from :class:`~.cgroups.CgroupPaths`. Each event
also carries the process's pids as its own pid namespace sees them and the inodes of its
pid and mount namespaces (0 in the record: the kernel could not read them; None here).

A path is exact or marked: one the kernel cut (longer than PO_PATH_CAP or deeper than
PO_MAX_DEPTH) keeps its last components behind :data:`CUT` (``.../c36/.../c99``) and sets
``image_truncated`` / ``cwd_truncated``; a deleted file or directory ends in
:data:`DELETED`, as /proc/PID/exe says it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass

from ..events import EventKind, QueuedItem, new_item
from .cgroups import CgroupPaths
from .ebpf_abi import (
    HEADER,
    HEADER_SIZE,
    PO_CGROUP,
    PO_EXEC,
    PO_EXIT,
    PO_F_ARGS_FAULT,
    PO_F_ARGS_TRUNCATED,
    PO_F_CGROUP_TAIL_CUT,
    PO_F_CGROUP_TRUNCATED,
    PO_F_CWD_DELETED,
    PO_F_CWD_TRUNCATED,
    PO_F_IMAGE_DELETED,
    PO_F_IMAGE_OUTSIDE,
    PO_F_IMAGE_TRUNCATED,
    PO_FORK,
)
from .procfs import NS_PER_S, REMEMBERED_PROCESSES, START_NS_TOLERANCE, ProcessInfo
from .wait_status import NOT_EXITED, WAIT_STATUS, WAIT_STATUS_MASK

log = logging.getLogger(__name__)

#: Decoded comm strings kept; beyond it the cache starts afresh.
_STRINGS_LIMIT = 4096
#: Where a cut path lost components: its first ones (or, for a cgroup, maybe its last).
CUT = "..."
#: After the path of a deleted file, as the kernel writes it in /proc.
DELETED = " (deleted)"

CREATED, EXEC, EXITED = EventKind.CREATED, EventKind.EXEC, EventKind.EXITED
_fsdecode = os.fsdecode
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


@dataclass(slots=True)
class Program:
    """What a live process runs, as its last exec (or /proc) said."""

    start_ns: int
    image: str | None
    command_line: list[str] | None
    cwd: str | None
    script: str | None = None
    truncated: bool = False
    size: int | None = None
    #: start_ns came from /proc (a clock tick's precision), not from the kernel
    approximate: bool = False
    image_truncated: bool = False
    cwd_truncated: bool = False
    image_outside_root: bool = False

    def forked(self, start_ns: int) -> Program:
        """The same program, run by a child that started at ``start_ns``."""
        return Program(
            start_ns,
            self.image,
            self.command_line,
            self.cwd,
            self.script,
            self.truncated,
            self.size,
            False,
            self.image_truncated,
            self.cwd_truncated,
            self.image_outside_root,
        )


class Programs:
    """Live processes' programs by pid; bounded, so that lost exits cannot grow it."""

    def __init__(self, capacity: int = REMEMBERED_PROCESSES) -> None:
        self._known: dict[int, Program] = {}
        self._capacity = capacity

    def __len__(self) -> int:
        return len(self._known)

    def seed(self, running: dict[int, ProcessInfo]) -> None:
        """The processes a /proc snapshot found (events since know better)."""
        for pid, info in running.items():
            if pid not in self._known:
                self.set(
                    pid,
                    Program(
                        info.start_ns, info.image, info.command_line, info.cwd, approximate=True
                    ),
                )

    def set(self, pid: int, program: Program) -> None:
        known = self._known
        known.pop(pid, None)
        if len(known) >= self._capacity:
            del known[next(iter(known))]  # the oldest: its exit was most likely lost
        known[pid] = program

    def parent_of(self, pid: int) -> Program | None:
        """The program of the live process with this pid (a fork's creator)."""
        return self._known.get(pid)

    def pop(self, pid: int, start_ns: int) -> Program | None:
        known = self._known.pop(pid, None)
        if known is None or not _same(known, start_ns):
            return None
        return known


def _same(known: Program, start_ns: int) -> bool:
    if known.approximate:
        return abs(known.start_ns - start_ns) <= START_NS_TOLERANCE
    return known.start_ns == start_ns


def split_argv(raw: bytes) -> list[str]:
    """argv from the NUL-separated argv area (the last argument may be cut when truncated).

    One decode of the whole area, then one split: NUL is one byte in the filesystem
    encoding (UTF-8, surrogateescape), so this is os.fsdecode of each argument, at a cost
    that does not grow with their number."""
    if not raw:
        return []
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return raw.decode(_FS_ENCODING, _FS_ERRORS).split("\0")


def absolute(script: str | None, cwd: str | None) -> str | None:
    """A relative ``#!`` script (as given to execve) made absolute with the cwd."""
    if script is None or cwd is None or script.startswith("/"):
        return script
    return os.path.normpath(os.path.join(cwd, script))


def path_text(raw: bytes, truncated: bool, deleted: bool) -> str:
    """A path from the kernel, marked where it is not the whole path of a live file."""
    text = _fsdecode(raw)
    if truncated:
        text = CUT + text
    if deleted:
        text += DELETED
    return text


def cgroup_text(raw: bytes, flags: int) -> str:
    """A cgroup path from the kernel, marked where it lost components: ``.../`` ahead when
    the hierarchy was deeper than the walk (the top was left out), ``/...`` behind when the
    byte cap cut the last ones."""
    text = _fsdecode(raw) or "/"
    if flags & PO_F_CGROUP_TRUNCATED:
        text = CUT + text
    if flags & PO_F_CGROUP_TAIL_CUT:
        text += "/" + CUT
    return text


class Decoder:
    """Turns the records of one read into QueuedItems (appended to ``out``)."""

    def __init__(
        self, programs: Programs | None = None, cgroups: CgroupPaths | None = None
    ) -> None:
        self.programs = programs if programs is not None else Programs()
        self.cgroups = cgroups if cgroups is not None else CgroupPaths()
        #: records skipped because they were malformed
        self.bad = 0
        #: PO_CGROUP records: cgroup paths, not events
        self.announced = 0
        self._strings: dict[bytes, str] = {}  # comms repeat: decode once

    def _text(self, raw: bytes) -> str:
        text = self._strings.get(raw)
        if text is None:
            if len(self._strings) > _STRINGS_LIMIT:
                self._strings.clear()
            text = self._strings[raw] = _fsdecode(raw)
        return text

    def decode(self, data: bytes, spans: list[tuple[int, int]], out: list[QueuedItem]) -> None:
        epoch_offset = time.time_ns() - time.monotonic_ns()
        unpack = HEADER.unpack_from
        programs, text, new, append = self.programs, self._text, new_item, out.append
        cgroups = self.cgroups
        wait_status, not_exited = WAIT_STATUS, NOT_EXITED
        ns_per_s = float(NS_PER_S)  # a float divisor: the timestamps' rounding stays as it was
        total = len(data)
        for offset, length in spans:
            if length < HEADER_SIZE or offset < 0 or offset + length > total:
                self.bad += 1
                continue
            (
                kind,
                flags,
                pid,
                ppid,
                uid,
                euid,
                ts,
                start,
                cg_id,
                status,
                _argc,
                args_size,
                args_len,
                image_len,
                script_len,
                cwd_len,
                cgroup_len,
                _,
                comm_raw,
                creator,
                _,
                ns_pid,
                ns_ppid,
                pid_ns,
                mnt_ns,
            ) = unpack(data, offset)
            p = offset + HEADER_SIZE
            if args_len + image_len + script_len + cwd_len + cgroup_len > length - HEADER_SIZE:
                self.bad += 1
                continue
            if kind == PO_CGROUP:  # not an event: the path of the events' cgroup_id
                q = p + args_len + image_len + script_len + cwd_len
                cgroups.add(cg_id, cgroup_text(data[q : q + cgroup_len], flags))
                self.announced += 1
                continue
            cgroup = cgroups.get(cg_id)
            comm = text(comm_raw.split(b"\0", 1)[0])
            when = (ts + epoch_offset) / ns_per_s
            # Each kind yields the program the process runs (None: nothing is known of it).
            known: Program | None
            if kind == PO_EXEC:
                event, (code, sig, core) = EXEC, not_exited
                argv = None if flags & PO_F_ARGS_FAULT else split_argv(data[p : p + args_len])
                p += args_len
                image_cut = bool(flags & PO_F_IMAGE_TRUNCATED)
                image = (
                    path_text(data[p : p + image_len], image_cut, bool(flags & PO_F_IMAGE_DELETED))
                    if image_len
                    else None
                )
                p += image_len
                script = _fsdecode(data[p : p + script_len]) if script_len else None
                p += script_len
                cwd_cut = bool(flags & PO_F_CWD_TRUNCATED)
                cwd = (
                    path_text(data[p : p + cwd_len], cwd_cut, bool(flags & PO_F_CWD_DELETED))
                    if cwd_len
                    else None
                )
                if not flags & (PO_F_CWD_TRUNCATED | PO_F_CWD_DELETED):  # a whole cwd
                    script = absolute(script, cwd)
                known = Program(
                    start,
                    image,
                    argv,
                    cwd,
                    script,
                    bool(flags & PO_F_ARGS_TRUNCATED),
                    args_size,
                    False,
                    image_cut,
                    cwd_cut,
                    bool(flags & PO_F_IMAGE_OUTSIDE),
                )
                programs.set(pid, known)
            elif kind == PO_FORK:  # the child runs the program of the process that forked it
                # (its creator: the parent, unless clone(CLONE_PARENT) gave it the creator's)
                event, (code, sig, core) = CREATED, not_exited
                known = programs.parent_of(creator)
                if known is not None:
                    programs.set(pid, known.forked(start))
            elif kind == PO_EXIT:  # what it ran, remembered from its exec (or its fork)
                event, (code, sig, core) = EXITED, wait_status[status & WAIT_STATUS_MASK]
                known = programs.pop(pid, start)
            else:
                self.bad += 1
                continue
            if known is None:
                image = argv = cwd = script = size = None
                truncated = image_cut = cwd_cut = outside = False
            else:
                image, argv, cwd = known.image, known.command_line, known.cwd
                script, truncated, size = known.script, known.truncated, known.size
                image_cut, cwd_cut = known.image_truncated, known.cwd_truncated
                outside = known.image_outside_root
            if not pid_ns:  # the kernel could not read the task's pid (none: 0 is no inode)
                ns_pid = ns_ppid = pid_ns = None
            append(
                new(
                    event,  # kind
                    pid,  # process_id
                    ppid,  # parent_id
                    when,  # timestamp
                    ts,  # monotonic_ns
                    image,  # image
                    argv,  # command_line
                    code,  # exit_code
                    sig,  # signal
                    core,  # core_dumped
                    uid,  # uid
                    start,  # start_ns
                    euid,  # euid
                    comm,  # comm
                    cwd,  # cwd
                    script,  # script
                    truncated,  # command_line_truncated
                    size,  # command_line_size
                    cg_id,  # cgroup_id
                    cgroup,  # cgroup
                    image_cut,  # image_truncated
                    cwd_cut,  # cwd_truncated
                    outside,  # image_outside_root
                    ns_pid,  # ns_pid
                    ns_ppid,  # ns_ppid
                    pid_ns,  # pid_ns
                    mnt_ns or None,  # mnt_ns
                )
            )
