"""A process-tree tracker: :class:`ProcessTree` follows parents, children and lifetimes.

It is an ordinary :class:`CallbackHandler`: pass it to ``ApplicationScope.get_instance``
or to :func:`procobsrv.monitor`, or wrap it in a :class:`~procobsrv.filters.FilterHandler`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from .callback import CallbackHandler
from .events import EventKind, QueuedItem

log = logging.getLogger(__name__)

#: What names one process, even when pids are reused: ``QueuedItem.key``.
Key = tuple[int, int]


@dataclass(frozen=True, slots=True)
class ProcessNode:
    """A snapshot of what the tracker knows about one process."""

    #: ``(pid, start_ns)``; ``start_ns`` is 0 for a process that started before monitoring.
    key: Key
    pid: int
    #: The pid of the process that created it (0 when unknown).
    ppid: int
    #: Key of the process that created it, when known. That process may have exited since:
    #: the kernel re-parents orphans without an event.
    parent: Key | None
    #: Keys of its live children.
    children: frozenset[Key] = frozenset()
    #: Kernel monotonic ns of its creation; 0 when it started before monitoring.
    start_ns: int = 0
    #: Seconds since the epoch of its creation, when seen.
    start_time: float | None = None
    image: str | None = None
    command_line: tuple[str, ...] | None = None
    uid: int | None = None
    exit_ns: int | None = None
    exit_time: float | None = None
    exit_code: int | None = None
    signal: int | None = None

    @property
    def alive(self) -> bool:
        return self.exit_ns is None and self.exit_time is None

    @property
    def lifetime(self) -> float | None:
        """Seconds from creation to exit (or to now while alive); None if the start is unknown."""
        if not self.start_ns:
            return None
        end = self.exit_ns if self.exit_ns is not None else time.monotonic_ns()
        return (end - self.start_ns) / 1e9


def _argv(item: QueuedItem) -> tuple[str, ...] | None:
    return None if item.command_line is None else tuple(item.command_line)


class ProcessTree(CallbackHandler):
    """Tracks live processes: parent, children, start time, lifetime; queries are thread-safe.

    Processes are keyed by ``(pid, start_ns)`` (``QueuedItem.key``), so a reused pid is a new
    node. A process first seen by an EXEC or EXITED event (it started before monitoring) is
    keyed ``(pid, 0)`` whatever ``start_ns`` its events carry: without its CREATED event its
    start is unknown. Exited processes move to :attr:`exited` (the last ``history`` of them)
    with their exit status and lifetime.
    """

    def __init__(self, history: int = 1000) -> None:
        self._lock = threading.RLock()
        self._nodes: dict[Key, ProcessNode] = {}
        self._by_pid: dict[int, Key] = {}
        self.exited: deque[ProcessNode] = deque(maxlen=history)
        self.lost = 0

    # -- CallbackHandler ------------------------------------------------------------------
    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        with self._lock:
            if item.kind is EventKind.CREATED:
                self._created(item)
            elif item.kind is EventKind.EXEC:
                key = self._resolve(item) or self._adopt(item.process_id, item.parent_id)
                self._nodes[key] = replace(
                    self._nodes[key], image=item.image, command_line=_argv(item), uid=item.uid
                )
            else:
                self._exited(item)

    def on_events_lost(self, count: int, param: Any) -> None:
        with self._lock:
            self.lost += count
        log.warning("%d process events were lost: the process tree may be incomplete", count)

    def seed(self, running: Iterable[QueuedItem]) -> None:
        """Know the processes that were running when monitoring began, e.g. the Linux
        sources' ``running`` (CREATED items read from /proc at open): keyed ``(pid, 0)`` as
        the rule above says, unless an event already named them."""
        with self._lock:
            for item in sorted(running, key=lambda i: i.start_ns):  # parents first
                if item.process_id in self._by_pid:
                    continue
                parent = self._by_pid.get(item.parent_id) if item.parent_id else None
                self._add(
                    ProcessNode(
                        (item.process_id, 0),
                        item.process_id,
                        item.parent_id,
                        parent,
                        start_time=item.timestamp,
                        image=item.image,
                        command_line=_argv(item),
                        uid=item.uid,
                    )
                )

    # -- queries --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def get(self, key: Key) -> ProcessNode | None:
        """The live process with this key."""
        return self._nodes.get(key)

    def find(self, pid: int) -> ProcessNode | None:
        """The live process that has this pid now."""
        with self._lock:
            key = self._by_pid.get(pid)
            return None if key is None else self._nodes.get(key)

    def node_for(self, item: QueuedItem) -> ProcessNode | None:
        """The live process an event is about (applies the ``(pid, 0)`` rule above)."""
        with self._lock:
            key = self._resolve(item)
            return None if key is None else self._nodes[key]

    def live(self) -> list[ProcessNode]:
        with self._lock:
            return list(self._nodes.values())

    def parent(self, key: Key) -> ProcessNode | None:
        """The live creator of this live process, if it is still alive."""
        with self._lock:
            node = self._nodes.get(key)
            return None if node is None or node.parent is None else self._nodes.get(node.parent)

    def children(self, key: Key) -> list[ProcessNode]:
        with self._lock:
            node = self._nodes.get(key)
            return [] if node is None else [self._nodes[k] for k in node.children]

    def descendants(self, key: Key) -> list[ProcessNode]:
        """Live children, grandchildren... of a live process, breadth first."""
        with self._lock:
            found: list[ProcessNode] = []
            todo = deque(self.children(key))
            while todo:
                node = todo.popleft()
                found.append(node)
                todo.extend(self.children(node.key))
            return found

    def ancestors(self, key: Key) -> list[ProcessNode]:
        """Live creators of a live process, nearest first."""
        with self._lock:
            found: list[ProcessNode] = []
            node = self.parent(key)
            while node is not None and node not in found:
                found.append(node)
                node = self.parent(node.key)
            return found

    # -- internals (under the lock) -------------------------------------------------------
    def _resolve(self, item: QueuedItem) -> Key | None:
        if item.key in self._nodes:
            return item.key
        unseen = (item.process_id, 0)
        return unseen if unseen in self._nodes else None

    def _adopt(self, pid: int, ppid: int) -> Key:
        """A node for a process that started before monitoring."""
        key = (pid, 0)
        parent = self._by_pid.get(ppid) if ppid else None
        self._add(ProcessNode(key, pid, ppid, parent))
        return key

    def _add(self, node: ProcessNode) -> None:
        old = self._by_pid.get(node.pid)
        if old is not None and old != node.key:
            # The pid was reused, so its previous owner is dead; its EXITED event was lost or
            # is still on its way from another CPU (events of different CPUs are not ordered).
            self._retire(old, None)
        self._nodes[node.key] = node
        self._by_pid[node.pid] = node.key
        if node.parent is not None:
            parent = self._nodes.get(node.parent)
            if parent is not None:
                self._nodes[node.parent] = replace(parent, children=parent.children | {node.key})

    def _created(self, item: QueuedItem) -> None:
        ppid = item.parent_id
        parent = self._by_pid.get(ppid)
        if parent is None and ppid:
            parent = self._adopt(ppid, 0)
        self._add(
            ProcessNode(
                item.key,
                item.process_id,
                ppid,
                parent,
                start_ns=item.start_ns,
                start_time=item.timestamp,
                image=item.image,
                command_line=_argv(item),
                uid=item.uid,
            )
        )

    def _exited(self, item: QueuedItem) -> None:
        key = self._resolve(item)
        if key is not None:
            self._retire(key, item)
            return
        # Its pid was reused before this late EXITED arrived: complete the retired record.
        for i, node in enumerate(self.exited):
            if node.key == item.key and node.exit_ns is None:
                self.exited[i] = _with_exit(node, item)
                return

    def _retire(self, key: Key, item: QueuedItem | None) -> None:
        node = self._nodes.pop(key)
        if self._by_pid.get(node.pid) == key:
            del self._by_pid[node.pid]
        if node.parent is not None:
            parent = self._nodes.get(node.parent)
            if parent is not None:
                self._nodes[node.parent] = replace(parent, children=parent.children - {key})
        if item is None:
            self.exited.append(replace(node, exit_time=time.time()))  # exit status unknown
        else:
            self.exited.append(_with_exit(node, item))


def _with_exit(node: ProcessNode, item: QueuedItem) -> ProcessNode:
    return replace(
        node,
        exit_ns=item.monotonic_ns,
        exit_time=item.timestamp,
        exit_code=item.exit_code,
        signal=item.signal,
        image=node.image or item.image,
        command_line=node.command_line or _argv(item),
    )
