"""What the kernel tells us: one immutable record per process start, exec or exit."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field


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
        }
