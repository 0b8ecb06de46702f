"""The processes one process spawned, however deep: :class:`Descendants` follows them by fork
parentage as the events arrive (``procobsrv trace`` and the pytest plugin's ``spawned``).

The rule: a process is a descendant when its CREATED event names, as its parent, the
ancestor or a descendant alive at that moment. Parentage is taken at fork time, so a
process the kernel re-parents later (its parent exited; it was daemonized) stays one, and
so do its own children. A process is named by ``(pid, start_ns)``, so a reused pid is a
new process. What was never seen to start (it started before the handler was subscribed)
is not followed: subscribe first, then spawn.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from .callback import CallbackHandler
from .events import EventKind, QueuedItem

#: ``(pid, start_ns)``: one process, even when the pid is reused (``QueuedItem.key``).
Key = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Spawned:
    """What was seen of one descendant."""

    pid: int
    #: The pid of its creator at fork time (it may have been re-parented since).
    ppid: int
    #: Key of its creator when that is a descendant too; None for a child of the ancestor.
    parent: Key | None
    #: Kernel monotonic ns of its creation.
    start_ns: int
    #: Seconds since the epoch of its creation.
    start_time: float
    #: argv of the program it runs: the last exec's (before any exec, its creator's).
    argv: tuple[str, ...] | None = None
    #: Absolute path of the program it runs.
    image: str | None = None
    cwd: str | None = None
    #: How many programs it exec'd (0: a fork that never ran a program of its own).
    execs: int = 0
    #: Kernel monotonic ns of its exit; None while it runs.
    exit_ns: int | None = None
    #: 0-255 when it exited normally, None when a signal killed it (or while it runs).
    exit_code: int | None = None
    #: The signal that killed it.
    signal: int | None = None
    core_dumped: bool = False

    @property
    def key(self) -> Key:
        return (self.pid, self.start_ns)

    @property
    def alive(self) -> bool:
        return self.exit_ns is None

    @property
    def duration(self) -> float | None:
        """Seconds from creation to exit; None while it runs."""
        return None if self.exit_ns is None else (self.exit_ns - self.start_ns) / 1e9

    @property
    def status(self) -> int | None:
        """The exit status as a shell gives it: the exit code, or 128 + the killing signal;
        None while it runs."""
        if self.exit_code is not None:
            return self.exit_code
        return None if self.signal is None else 128 + self.signal

    @property
    def name(self) -> str | None:
        """The program's name as it was run (argv[0]'s file name, e.g. ``cc`` where the
        image is ``x86_64-linux-gnu-gcc-12``), else the image's file name."""
        if self.argv and self.argv[0]:
            return os.path.basename(self.argv[0])
        return None if self.image is None else os.path.basename(self.image)


class Descendants(CallbackHandler):
    """Follows the descendants of ``ancestor`` (default: this process); thread-safe.

    Subscribe it (``procobsrv.monitor(Descendants())``) *before* spawning: a process whose
    CREATED event was not seen is not followed. ``lost`` counts events lost meanwhile (the
    record may then miss processes).
    """

    def __init__(self, ancestor: int | None = None) -> None:
        self.ancestor = os.getpid() if ancestor is None else ancestor
        self.lost = 0
        self._changed = threading.Condition()
        self._processes: dict[Key, Spawned] = {}  # in creation order
        self._alive: dict[int, Key] = {}  # pid -> key, of descendants not yet exited

    # -- CallbackHandler ------------------------------------------------------------------
    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        with self._changed:
            if item.kind is EventKind.CREATED:
                self._created(item)
                return
            key = self._alive.get(item.process_id)
            if key is None:
                return
            node = self._processes[key]
            if item.kind is EventKind.EXEC:
                self._processes[key] = replace(
                    node,
                    argv=_argv(item) or node.argv,
                    image=item.image or node.image,
                    cwd=item.cwd or node.cwd,
                    execs=node.execs + 1,
                )
            else:
                del self._alive[item.process_id]
                self._processes[key] = replace(
                    node,
                    exit_ns=item.monotonic_ns or time.monotonic_ns(),
                    exit_code=item.exit_code,
                    signal=item.signal,
                    core_dumped=item.core_dumped,
                )
                self._changed.notify_all()

    def on_events_lost(self, count: int, param: Any) -> None:
        with self._changed:
            self.lost += count

    def _created(self, item: QueuedItem) -> None:
        parent = item.parent_id
        if parent != self.ancestor and parent not in self._alive:
            return
        node = Spawned(
            pid=item.process_id,
            ppid=parent,
            parent=self._alive.get(parent),
            start_ns=item.start_ns or item.monotonic_ns,
            start_time=item.timestamp,
            argv=_argv(item),
            image=item.image,
            cwd=item.cwd,
        )
        self._processes[node.key] = node
        self._alive[node.pid] = node.key  # a reused pid (its exit event lost): the new one
        self._changed.notify_all()

    # -- queries --------------------------------------------------------------------------
    def processes(self) -> list[Spawned]:
        """Every descendant seen so far, in creation order."""
        with self._changed:
            return list(self._processes.values())

    def subtree(self, pid: int) -> list[Spawned]:
        """The descendant with this pid (the first seen) and its own descendants."""
        with self._changed:
            found: list[Spawned] = []
            keys: set[Key] = set()
            for node in self._processes.values():  # creation order: parents first
                if (not keys and node.pid == pid) or node.parent in keys:
                    keys.add(node.key)
                    found.append(node)
            return found

    def take_exited(self) -> list[Spawned]:
        """The descendants seen to exit so far, in creation order, forgotten as they are
        returned: what a follower of a long run calls to keep its memory bounded (they leave
        ``processes()`` and ``subtree()``; those still running are followed as before)."""
        with self._changed:
            gone = [p for p in self._processes.values() if not p.alive]
            for p in gone:
                del self._processes[p.key]
            return gone

    def alive(self) -> int:
        """Descendants seen to start and not yet seen to exit."""
        with self._changed:
            return len(self._alive)

    def wait_seen(self, pid: int, *, exited: bool = False, timeout: float | None) -> bool:
        """Wait until a descendant with this pid has been seen to start (``exited``: and to
        exit): its events may still be on their way when its parent already knows."""

        def seen() -> bool:  # newest first: the one waited for is usually recent
            for p in reversed(self._processes.values()):
                if p.pid == pid:
                    return not (exited and p.alive)
            return False

        with self._changed:
            return self._changed.wait_for(seen, timeout)

    def wait_exited(self, timeout: float | None) -> bool:
        """Wait until every descendant seen has exited; False if ``timeout`` came first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._alive, timeout)


def _argv(item: QueuedItem) -> tuple[str, ...] | None:
    return None if item.command_line is None else tuple(item.command_line)
