"""Ring buffer records of the eBPF program -> QueuedItems, with what each process ran.

The decoder never raises: a record that is too short, names an unknown kind, or whose
lengths point outside it is counted in :attr:`Decoder.bad` and skipped. An exit record
carries no argv (the kernel has already freed the process's memory then): the image, argv,
cwd and script come from :class:`Programs`, which remembers each live process's exec (or
the /proc snapshot taken at start), keyed by pid and checked against its start time.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from ..events import EventKind, QueuedItem, new_item
from .ebpf_abi import (
    HEADER,
    HEADER_SIZE,
    PO_EXEC,
    PO_EXIT,
    PO_F_ARGS_FAULT,
    PO_F_ARGS_TRUNCATED,
    PO_FORK,
)
from .procfs import NS_PER_S, REMEMBERED_PROCESSES, START_NS_TOLERANCE, ProcessInfo
from .wait_status import NOT_EXITED, WAIT_STATUS, WAIT_STATUS_MASK

log = logging.getLogger(__name__)

#: Decoded comm and cgroup strings kept; beyond it the cache starts afresh.
_STRINGS_LIMIT = 4096

CREATED, EXEC, EXITED = EventKind.CREATED, EventKind.EXEC, EventKind.EXITED
_fsdecode = os.fsdecode


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
        """The program of the live process with this pid (a fork names only its parent's pid)."""
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
    """argv from the NUL-separated argv area (the last argument may be cut when truncated)."""
    if not raw:
        return []
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return [_fsdecode(arg) for arg in raw.split(b"\0")]


class Decoder:
    """Turns the records of one read into QueuedItems (appended to ``out``)."""

    def __init__(self, programs: Programs | None = None) -> None:
        self.programs = programs if programs is not None else Programs()
        #: records skipped because they were malformed
        self.bad = 0
        self._strings: dict[bytes, str] = {}  # comm and cgroup paths repeat: decode once

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
            ) = unpack(data, offset)
            p = offset + HEADER_SIZE
            if args_len + image_len + script_len + cwd_len + cgroup_len > length - HEADER_SIZE:
                self.bad += 1
                continue
            q = p + args_len + image_len + script_len + cwd_len
            cgroup = text(data[q : q + cgroup_len]) if cgroup_len else None
            comm = text(comm_raw.split(b"\0", 1)[0])
            when = (ts + epoch_offset) / ns_per_s
            # Each kind yields the program the process runs (None: nothing is known of it).
            known: Program | None
            if kind == PO_EXEC:
                event, (code, sig, core) = EXEC, not_exited
                argv = None if flags & PO_F_ARGS_FAULT else split_argv(data[p : p + args_len])
                p += args_len
                image = _fsdecode(data[p : p + image_len]) if image_len else None
                p += image_len
                script = _fsdecode(data[p : p + script_len]) if script_len else None
                p += script_len
                cwd = _fsdecode(data[p : p + cwd_len]) if cwd_len else None
                if script is not None and not script.startswith("/") and cwd is not None:
                    script = os.path.normpath(os.path.join(cwd, script))
                truncated = bool(flags & PO_F_ARGS_TRUNCATED)
                known = Program(start, image, argv, cwd, script, truncated, args_size)
                programs.set(pid, known)
            elif kind == PO_FORK:  # the child runs its parent's program
                event, (code, sig, core) = CREATED, not_exited
                known = programs.parent_of(ppid)
                if known is not None:
                    programs.set(
                        pid,
                        Program(
                            start,
                            known.image,
                            known.command_line,
                            known.cwd,
                            known.script,
                            known.truncated,
                            known.size,
                        ),
                    )
            elif kind == PO_EXIT:  # what it ran, remembered from its exec (or its fork)
                event, (code, sig, core) = EXITED, wait_status[status & WAIT_STATUS_MASK]
                known = programs.pop(pid, start)
            else:
                self.bad += 1
                continue
            if known is None:
                image = argv = cwd = script = size = None
                truncated = False
            else:
                image, argv, cwd = known.image, known.command_line, known.cwd
                script, truncated, size = known.script, known.truncated, known.size
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
                )
            )
