"""The Linux publisher: process events from the kernel's connector, as QueuedItems."""

from __future__ import annotations

import errno
import logging
import time
from dataclasses import replace

from ..errors import MonitorError
from ..events import EventKind, QueuedItem, new_item
from ..platform import Batch, KernelSource, not_open
from .connector import (
    DEFAULT_ACK_TIMEOUT,
    DEFAULT_RCVBUF,
    SLOTS,
    ConnectorSocket,
    Datagrams,
    ReceiveRing,
    Subscription,
)
from .connector_abi import (
    EXEC_PROCESS_TGID,
    EXIT_EXIT_CODE,
    EXIT_PARENT_TGID,
    EXIT_PROCESS_PID,
    EXIT_PROCESS_TGID,
    FORK_CHILD_PID,
    FORK_CHILD_TGID,
    FORK_PARENT_TGID,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    TIMESTAMP,
    WHAT,
    Record,
)
from .connector_decoder import Decoder
from .procfs import NS_PER_S, ProcessInfo, ProcessTable, as_created, cgroup_id, snapshot
from .wait_status import NOT_EXITED, WAIT_STATUS, WAIT_STATUS_MASK

log = logging.getLogger(__name__)

#: recvmmsg rounds per fetch: bounds the time before a batch is handed on during a storm.
MAX_ROUNDS = 16
#: Seconds between two looks at /proc for held leader exits whose last thread's exit was
#: not seen (lost in an overflow): each such process costs one read per look.
RECHECK_S = 1.0

CREATED, EXEC, EXITED = EventKind.CREATED, EventKind.EXEC, EventKind.EXITED


class ConnectorSource(KernelSource):
    """Subscribes to ``cn_proc`` and turns its records into process-level QueuedItems.

    Thread events are dropped: a fork whose child is not a thread-group leader is a new
    thread, and so is an exit of a task that is not its group's leader.

    The leader's exit is the process's exit only when no thread of the group is left. It is
    not when the leader ended alone (``pthread_exit``) while other threads go on, nor when
    another thread's exec took the leader's place (the kernel ends the old leader first).
    While threads are left, the leader's exit is held (:class:`LeaderGone`) until the
    group's last thread ends, and dropped when an exec follows it. For a process whose fork
    was seen, its threads are counted from the events themselves, in the order the kernel
    sent them (no /proc read, no race); for one that ran before the subscription, /proc
    tells whether threads are left.

    ``socket`` (the netlink socket and its subscription handshake), ``ring`` (where
    datagrams are received) and ``decoder`` default to the real ones; a test or a replay
    passes its own. ``rcvbuf`` and ``ack_timeout`` configure the default socket (a
    ValueError with ``socket=``, which they would not reach).
    """

    name = "connector"

    def __init__(
        self,
        *,
        rcvbuf: int | None = None,
        read_proc: bool = True,
        ack_timeout: float | None = None,
        socket: Subscription | None = None,
        ring: Datagrams | None = None,
        decoder: Decoder | None = None,
    ) -> None:
        if socket is None:
            socket = ConnectorSocket(
                DEFAULT_RCVBUF if rcvbuf is None else rcvbuf,
                DEFAULT_ACK_TIMEOUT if ack_timeout is None else ack_timeout,
            )
        elif rcvbuf is not None or ack_timeout is not None:
            # they configure the socket this source would make: with socket= they would be lost
            raise ValueError("rcvbuf and ack_timeout are the socket's: set them on the one passed")
        self._socket = socket
        self._ring = ReceiveRing() if ring is None else ring
        self.decoder = Decoder() if decoder is None else decoder
        self.processes = ProcessTable(read_proc)
        self._read_proc = read_proc
        #: The processes running at open, as CREATED items (for ``ProcessTree.seed``).
        self.running: list[QueuedItem] = []
        self.overruns = 0  # ENOBUFS seen: the kernel dropped messages (counted by sequence gaps)
        self._pending: list[Record] = []
        #: Threads (the leader not counted) of processes seen creating threads, from the
        #: fork and exit events: the leader's exit ends the process only when it is 0.
        self._threads: dict[int, int] = {}
        #: Leaders that ended while threads of theirs went on, by pid.
        self._leaderless: dict[int, LeaderGone] = {}
        self._recheck_at = 0.0  # when /proc is next asked whether they ended
        self._is_open = False

    # -- KernelSource -----------------------------------------------------------------
    def open(self) -> None:
        if self._is_open:
            raise MonitorError("the connector source is already open")
        # A new subscription: what the last one saw says nothing about this one's losses.
        self._pending = []
        self.decoder.restart()
        self._socket.open()
        self._is_open = True
        try:
            self._socket.subscribe(self._receive, self._pending)
            if self._read_proc:
                running = snapshot()
                # start_ns stays 0 for these, as for any process whose fork was not seen
                self.processes.seed({p: replace(i, start_ns=0) for p, i in running.items()})
                self.running = as_created(running)
        except BaseException:
            self.close()
            raise

    @property
    def wait_handle(self) -> int:
        if not self._is_open:
            raise not_open("connector")
        return self._socket.fd

    def fetch_batch(self) -> Batch:
        if not self._is_open:
            raise not_open("connector")
        records, self._pending = self._pending, []
        self._receive(records)
        items = self._to_items(records)
        if self._leaderless and time.monotonic() >= self._recheck_at:
            # a thread's exit lost (counted) must not hold its process for ever
            self._recheck_at = time.monotonic() + RECHECK_S
            for pid in [p for p in self._leaderless if self.processes.group_ended(p)]:
                items.append(self._leaderless.pop(pid).item())
        return Batch(items, self.decoder.take_lost())

    def close(self) -> None:
        if not self._is_open:
            return
        self._is_open = False
        self._socket.close()
        if self.processes.fd_exhausted:
            log.warning(
                "%d /proc reads failed: no file descriptor was left (EMFILE/ENFILE)",
                self.processes.fd_exhausted,
            )

    # -- internals ----------------------------------------------------------------------
    def _receive(self, out: list[Record]) -> None:
        ring, fd = self._ring, self._socket.fd
        receive, buffer, decode = ring.receive, ring.buffer, self.decoder.decode
        for _ in range(MAX_ROUNDS):
            try:
                datagrams = receive(fd)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise MonitorError(f"reading the connector socket failed: {exc}") from exc
                self.overruns += 1
                log.warning("the kernel dropped process events (socket buffer full); counting them")
                continue
            for offset, length in datagrams:
                decode(buffer, offset, length, out)
            if len(datagrams) < SLOTS:
                break

    def _goes_on(self, pid: int) -> bool:
        """Whether the process whose leader just ended, and whose threads were not all seen
        (it ran before the subscription), still has threads: /proc says."""
        return self._read_proc and not self.processes.group_ended(pid)

    def _last_thread(self, held: LeaderGone, left: int) -> bool:
        """Whether the thread whose exit left ``left`` counted threads was the last one."""
        return left <= 0 if held.counted else self.processes.group_ended(held.pid)

    def _to_items(self, records: list[Record]) -> list[QueuedItem]:
        items: list[QueuedItem] = []
        append = items.append
        processes = self.processes
        new = new_item
        wait_status, not_exited = WAIT_STATUS, NOT_EXITED
        ns_per_s = float(NS_PER_S)  # a float divisor: the timestamps' rounding stays as it was
        # The kernel stamps events on CLOCK_MONOTONIC; convert once per batch.
        epoch_offset = time.time_ns() - time.monotonic_ns()
        leaderless, threads = self._leaderless, self._threads
        for rec in records:
            what = rec[WHAT]
            ts = rec[TIMESTAMP]
            if what == PROC_EVENT_FORK:
                pid = rec[FORK_CHILD_TGID]
                if rec[FORK_CHILD_PID] != pid:
                    threads[pid] = threads.get(pid, 0) + 1
                    continue  # a new thread, not a new process
                if leaderless and pid in leaderless:  # its pid is used again: the old one ended
                    append(leaderless.pop(pid).item())
                if threads:
                    threads.pop(pid, None)  # a pid used again starts with one thread
                parent = rec[FORK_PARENT_TGID]
                info = processes.forked(pid, parent, ts)
                kind, start, (code, sig, core) = CREATED, ts, not_exited
            elif what == PROC_EVENT_EXEC:
                pid = rec[EXEC_PROCESS_TGID]
                if leaderless:  # the leader "ended" for a thread's exec: no exit
                    held = leaderless.pop(pid, None)
                    if held is not None and held.info is not None:
                        processes.restore(pid, held.info)
                if threads:
                    threads.pop(pid, None)  # an exec leaves one thread
                info = processes.executed(pid)
                kind, parent, start, (code, sig, core) = (
                    EXEC,
                    info.parent_id,
                    info.start_ns,
                    not_exited,
                )
            elif what == PROC_EVENT_EXIT:
                pid = rec[EXIT_PROCESS_TGID]
                status = rec[EXIT_EXIT_CODE] & WAIT_STATUS_MASK
                if rec[EXIT_PROCESS_PID] != pid:  # a thread ended, not the process...
                    left = threads.get(pid, 0) - 1
                    if left > 0:
                        threads[pid] = left
                    elif left == 0:
                        del threads[pid]
                    held = leaderless.get(pid) if leaderless else None
                    if held is not None and self._last_thread(held, left):  # ...unless the last
                        del leaderless[pid]
                        append(held.item(status, ts))
                    continue
                parent = rec[EXIT_PARENT_TGID]
                gone = processes.exited(pid)
                others = threads.pop(pid, 0) if threads else 0
                counted = gone is not None and gone.start_ns != 0  # its fork, threads seen
                if others if counted else self._goes_on(pid):
                    if counted:
                        threads[pid] = others
                    held = LeaderGone(pid, parent, ts, status, epoch_offset, gone, counted)
                    leaderless[pid] = held
                    continue
                code, sig, core = wait_status[status]
                if gone is None:  # never heard of: what the event says, and no more
                    append(
                        new(
                            EXITED,  # kind
                            pid,  # process_id
                            parent,  # parent_id
                            (ts + epoch_offset) / ns_per_s,  # timestamp
                            ts,  # monotonic_ns
                            None,  # image
                            None,  # command_line
                            code,  # exit_code
                            sig,  # signal
                            core,  # core_dumped
                        )
                    )
                    continue
                kind, info, start = EXITED, gone, gone.start_ns
            else:
                continue
            ns = info.namespaces
            append(
                new(
                    kind,  # kind
                    pid,  # process_id
                    parent,  # parent_id
                    (ts + epoch_offset) / ns_per_s,  # timestamp
                    ts,  # monotonic_ns
                    info.image,  # image
                    info.command_line,  # command_line
                    code,  # exit_code
                    sig,  # signal
                    core,  # core_dumped
                    info.uid,  # uid
                    start,  # start_ns
                    info.euid,  # euid
                    info.comm,  # comm
                    info.cwd,  # cwd
                    None,  # script
                    False,  # command_line_truncated
                    None,  # command_line_size
                    cgroup_id(info.cgroup),  # cgroup_id
                    info.cgroup,  # cgroup
                    False,  # image_truncated
                    False,  # cwd_truncated
                    False,  # image_outside_root
                    ns.ns_pid,  # ns_pid
                    ns.ns_ppid,  # ns_ppid
                    ns.pid_ns,  # pid_ns
                    ns.mnt_ns,  # mnt_ns
                )
            )
        return items


class LeaderGone:
    """The exit of a leader whose threads went on: the process's exit, once they end."""

    __slots__ = ("counted", "epoch_offset", "info", "parent", "pid", "status", "ts")

    def __init__(
        self,
        pid: int,
        parent: int,
        ts: int,
        status: int,
        epoch_offset: int,
        info: ProcessInfo | None,
        counted: bool,
    ) -> None:
        self.pid, self.parent, self.ts, self.status = pid, parent, ts, status
        self.epoch_offset = epoch_offset
        self.info = info
        #: Its threads are counted from the events (its fork was seen); else /proc tells.
        self.counted = counted

    def item(self, status: int | None = None, ts: int | None = None) -> QueuedItem:
        """The process's EXITED item. ``status`` and ``ts``: those of the last thread's exit
        (a group exit or a signal gives every thread the process's status); a last thread
        that ended with 0 leaves the leader's status, which is then the process's."""
        status = status or self.status
        ts = self.ts if ts is None else ts
        code, sig, core = WAIT_STATUS[status]
        info = self.info
        return QueuedItem(
            EXITED,
            self.pid,
            self.parent,
            (ts + self.epoch_offset) / NS_PER_S,
            ts,
            info.image if info else None,
            info.command_line if info else None,
            code,
            sig,
            core,
            uid=info.uid if info else None,
            start_ns=info.start_ns if info else 0,
            euid=info.euid if info else None,
            comm=info.comm if info else None,
            cwd=info.cwd if info else None,
            cgroup_id=cgroup_id(info.cgroup) if info else None,
            cgroup=info.cgroup if info else None,
            ns_pid=info.namespaces.ns_pid if info else None,
            ns_ppid=info.namespaces.ns_ppid if info else None,
            pid_ns=info.namespaces.pid_ns if info else None,
            mnt_ns=info.namespaces.mnt_ns if info else None,
        )
