"""What the kernel tells us: one immutable record per process start, exec or exit."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import os
from dataclasses import dataclass, field
from typing import Any

from .containers import Container, container_fields, container_of


class EventKind(enum.Enum):
    """The three things that happen to a process."""

    CREATED = "created"  # a new process exists (fork on Linux, process creation on Windows)
    EXEC = "exec"  # the process now runs another program (Linux only)
    EXITED = "exited"  # the process ended

    # Members are singletons compared by identity, so the identity hash is the right one;
    # Enum's own __hash__ is Python code (hash of the name), run for every event the
    # delivery counts by kind, per subscriber.
    __hash__ = object.__hash__


@dataclass(frozen=True, slots=True)
class QueuedItem:
    """One process event, as queued between the monitor and the handler.

    The article's ``QUEUED_ITEM`` held ``hParentId``, ``hProcessId`` and ``bCreate``;
    this one also carries what a user needs to act on the event.
    """

    kind: EventKind
    process_id: int
    parent_id: int
    #: Seconds since the epoch, from the kernel's own timestamp of the event.
    timestamp: float
    #: The kernel's timestamp on CLOCK_MONOTONIC (Linux) / interrupt time (Windows), in ns.
    monotonic_ns: int = 0
    #: Absolute path of the program, or None when it could not be learned in time.
    image: str | None = None
    #: argv, or None when it could not be learned in time. A list, as the API promises; it is
    #: left out of the hash so that items stay usable as set members and dict keys.
    command_line: list[str] | None = field(default=None, hash=False)
    #: EXITED only: 0-255 when the process exited normally on Linux (None when a signal killed
    #: it); on Windows the full 32-bit exit status (e.g. 0xC000013A for Ctrl+C).
    exit_code: int | None = None
    #: The signal that killed the process (EXITED only), else None.
    signal: int | None = None
    #: True when the killing signal also dumped core.
    core_dumped: bool = False
    #: Real user id of the process when known (``euid`` is the effective one).
    uid: int | None = None
    #: Kernel timestamp (monotonic ns) of the process's creation: exact from the eBPF source
    #: (even for a process started before monitoring); with the connector, the fork event's,
    #: or 0 when the fork was not seen (the process started before monitoring). Together with
    #: the pid it names one process even when pids are reused.
    start_ns: int = 0
    #: Effective user id when known.
    euid: int | None = None
    #: The kernel's short name of the task (``comm``, at most 15 characters).
    comm: str | None = None
    #: Working directory at exec (or when learned).
    cwd: str | None = None
    #: EXEC of a ``#!`` script: the script as run, absolute; ``image`` is then the program the
    #: kernel runs (the interpreter, as /proc/PID/exe says).
    script: str | None = None
    #: argv was longer than the capture limit and ``command_line`` holds its beginning.
    command_line_truncated: bool = False
    #: Full size in bytes of the argv area the program received (NUL separators included).
    command_line_size: int | None = None
    #: cgroup v2 id.
    cgroup_id: int | None = None
    #: cgroup v2 path, e.g. ``/system.slice/ssh.service``.
    cgroup: str | None = None
    #: ``image`` is not the whole path: the kernel kept its last components (eBPF: a path
    #: longer than 4,096 bytes or deeper than 64 components), shown after ``...``.
    image_truncated: bool = False
    #: The same for ``cwd``.
    cwd_truncated: bool = False
    #: ``image`` lies outside the process's root directory or mount namespace (run from a
    #: file descriptor opened elsewhere, or a memfd): the path is the host's view of it.
    image_outside_root: bool = False
    #: The process's pid as its own pid namespace sees it (in a container: the container's
    #: pid, 1 for its first process); equal to ``process_id`` outside any container. None
    #: when the source could not know (Windows; the connector when the process was gone).
    ns_pid: int | None = None
    #: The parent's pid in that same namespace, as ``getppid()`` says there: 0 when the
    #: parent lies outside it (a namespace's first process).
    ns_ppid: int | None = None
    #: The inode of the process's pid namespace (``os.stat("/proc/PID/ns/pid").st_ino``).
    pid_ns: int | None = None
    #: The inode of its mount namespace (``/proc/PID/ns/mnt``).
    mnt_ns: int | None = None

    @property
    def create(self) -> bool:
        """The article's ``bCreate``: True for a started process."""
        return self.kind is EventKind.CREATED

    @property
    def key(self) -> tuple[int, int]:
        """A key that stays unique when the kernel reuses a pid."""
        return (self.process_id, self.start_ns)

    @property
    def name(self) -> str | None:
        """The program's file name, e.g. ``sleep``."""
        if self.image is None:
            return None
        return os.path.basename(self.image.replace("\\", "/"))

    @property
    def container(self) -> Container | None:
        """The container the process runs in, as its cgroup path names it (Docker,
        containerd/CRI, Podman, systemd-nspawn, LXC); None outside any, or unknown."""
        return container_of(self.cgroup)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the format of ``procobsrv watch --json``)."""
        return {
            "kind": self.kind.value,
            "pid": self.process_id,
            "ppid": self.parent_id,
            "timestamp": self.timestamp,
            "image": self.image,
            "command_line": self.command_line,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "core_dumped": self.core_dumped,
            "uid": self.uid,
            "start_ns": self.start_ns,
            "euid": self.euid,
            "comm": self.comm,
            "cwd": self.cwd,
            "script": self.script,
            "command_line_truncated": self.command_line_truncated,
            "command_line_size": self.command_line_size,
            "cgroup_id": self.cgroup_id,
            "cgroup": self.cgroup,
            "image_truncated": self.image_truncated,
            "cwd_truncated": self.cwd_truncated,
            "image_outside_root": self.image_outside_root,
            "ns_pid": self.ns_pid,
            "ns_ppid": self.ns_ppid,
            "pid_ns": self.pid_ns,
            "mnt_ns": self.mnt_ns,
            **container_fields(self.container),
        }


class _ItemFields:
    """QueuedItem's slots on a plain class: the fast path below fills these, then the object
    becomes a QueuedItem (same layout, so ``__class__`` assignment copies nothing)."""

    __slots__ = QueuedItem.__slots__  # dataclass(slots=True) made them


_new_object = object.__new__


def new_item(
    kind: EventKind,
    process_id: int,
    parent_id: int,
    timestamp: float,
    monotonic_ns: int = 0,
    image: str | None = None,
    command_line: list[str] | None = None,
    exit_code: int | None = None,
    signal: int | None = None,
    core_dumped: bool = False,
    uid: int | None = None,
    start_ns: int = 0,
    euid: int | None = None,
    comm: str | None = None,
    cwd: str | None = None,
    script: str | None = None,
    command_line_truncated: bool = False,
    command_line_size: int | None = None,
    cgroup_id: int | None = None,
    cgroup: str | None = None,
    image_truncated: bool = False,
    cwd_truncated: bool = False,
    image_outside_root: bool = False,
    ns_pid: int | None = None,
    ns_ppid: int | None = None,
    pid_ns: int | None = None,
    mnt_ns: int | None = None,
) -> QueuedItem:
    """``QueuedItem(...)``, built in a fraction of the time: the sources' per-event path.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, the
    largest single cost of an event in the pipeline (docs/performance.md). Here the fields
    are plain slot stores on a twin class. The parameters are the class's, by name, order,
    type and default: checked below at import, so that reordering the class's fields fails
    at once instead of shifting every positional call by one (tests/test_events.py
    also checks that the objects are equal). The sources' hot loops call it positionally,
    one argument per line with the field named beside it: passing 10 to 16 keywords costs
    about 0.15 us per event, 10% of the connector source's time (measured for issue 16).
    """
    item: Any = _new_object(_ItemFields)  # a QueuedItem once the last line has run
    item.kind = kind
    item.process_id = process_id
    item.parent_id = parent_id
    item.timestamp = timestamp
    item.monotonic_ns = monotonic_ns
    item.image = image
    item.command_line = command_line
    item.exit_code = exit_code
    item.signal = signal
    item.core_dumped = core_dumped
    item.uid = uid
    item.start_ns = start_ns
    item.euid = euid
    item.comm = comm
    item.cwd = cwd
    item.script = script
    item.command_line_truncated = command_line_truncated
    item.command_line_size = command_line_size
    item.cgroup_id = cgroup_id
    item.cgroup = cgroup
    item.image_truncated = image_truncated
    item.cwd_truncated = cwd_truncated
    item.image_outside_root = image_outside_root
    item.ns_pid = ns_pid
    item.ns_ppid = ns_ppid
    item.pid_ns = pid_ns
    item.mnt_ns = mnt_ns
    item.__class__ = QueuedItem
    return item  # type: ignore[no-any-return]


def _check_fast_path() -> None:
    fields = [(f.name, f.default) for f in dataclasses.fields(QueuedItem)]
    parameters = [(p.name, p.default) for p in inspect.signature(new_item).parameters.values()]
    empty = inspect.Parameter.empty
    if [(n, empty if d is dataclasses.MISSING else d) for n, d in fields] != parameters:
        raise TypeError("events.new_item must take QueuedItem's fields, in their order")


_check_fast_path()
