"""The Linux publisher: process events from the kernel's connector, as QueuedItems."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import MonitorError
from ..events import EventKind, QueuedItem
from ..platform import Batch, KernelSource
from . import connector
from .connector import ConnectorSocket, ReceiveRing
from .parser import (
    CN_ACK,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    PROC_EVENT_NONE,
    TIMESTAMP,
    U0,
    U1,
    U2,
    U3,
    U5,
    WHAT,
    Decoder,
    Record,
)
from .procfs import ProcessTable, as_created, cgroup_id, snapshot

log = logging.getLogger(__name__)

#: recvmmsg rounds per fetch: bounds the time before a batch is handed on during a storm.
MAX_ROUNDS = 16

CREATED, EXEC, EXITED = EventKind.CREATED, EventKind.EXEC, EventKind.EXITED


def decode_wait_status(status: int) -> tuple[int | None, int | None, bool]:
    """(exit_code, signal, core_dumped) from the raw wait status the kernel reports."""
    if status & 0x7F == 0:
        return (status >> 8) & 0xFF, None, False
    return None, status & 0x7F, bool(status & 0x80)


class ConnectorSource(KernelSource):
    """Subscribes to ``cn_proc`` and turns its records into process-level QueuedItems.

    Thread events are dropped: a fork whose child is not a thread-group leader is a new
    thread, and so is an exit of a task that is not its group's leader.
    """

    name = "connector"

    def __init__(
        self,
        *,
        rcvbuf: int = connector.DEFAULT_RCVBUF,
        read_proc: bool = True,
        ack_timeout: float = 2.0,
    ) -> None:
        self._socket = ConnectorSocket(rcvbuf, ack_timeout)
        self._ring = ReceiveRing()
        self.decoder = Decoder()
        self.processes = ProcessTable(read_proc)
        self._read_proc = read_proc
        #: The processes running at open, as CREATED items (for ``ProcessTree.seed``).
        self.running: list[QueuedItem] = []
        self.overruns = 0  # ENOBUFS seen: the kernel dropped messages (counted by sequence gaps)
        self._pending: list[Record] = []
        self._acked = False
        self._is_open = False

    # -- KernelSource -----------------------------------------------------------------
    def open(self) -> None:
        self._socket.open()
        self._is_open = True
        try:
            self._subscribe()
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
        return self._socket.fd

    def fetch_batch(self) -> Batch:
        records, self._pending = self._pending, []
        self._receive(records)
        return Batch(self._to_items(records), self.decoder.take_lost())

    def close(self) -> None:
        if self._is_open:
            self._is_open = False
            self._socket.close()
            if self.processes.fd_exhausted:
                log.warning("%d /proc reads failed: no file descriptor was left (EMFILE/ENFILE)",
                            self.processes.fd_exhausted)  # fmt: skip

    # -- internals ----------------------------------------------------------------------
    def _subscribe(self) -> None:
        """Send LISTEN and wait for our own ack; keep whatever events arrive meanwhile."""
        self._socket.send(connector.PROC_CN_MCAST_LISTEN)
        deadline = time.monotonic() + self._socket.ack_timeout
        while not self._acked:
            if not self._socket.wait_readable(deadline):
                raise MonitorError(connector.NO_ACK.format(timeout=self._socket.ack_timeout))
            first_new = len(self._pending)
            self._receive(self._pending)
            for rec in self._pending[first_new:]:
                if rec[WHAT] == PROC_EVENT_NONE:
                    self._check_ack(rec)

    def _check_ack(self, rec: Record) -> None:
        """Raise if this is our subscription's ack and it carries an error."""
        if not self._socket.is_own_ack(rec[CN_ACK]):
            return  # another listener's ack, delivered to everyone
        err = rec[U0]
        if err == errno.EPERM:
            raise MonitorError(connector._NOT_PERMITTED)
        if err:
            raise MonitorError(connector.ACK_ERROR.format(error=os.strerror(err)))
        self._acked = True

    def _receive(self, out: list[Record]) -> None:
        ring, decoder, fd = self._ring, self.decoder, self._socket.fd
        for _ in range(MAX_ROUNDS):
            try:
                datagrams = ring.receive(fd)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise MonitorError(f"reading the connector socket failed: {exc}") from exc
                self.overruns += 1
                log.warning("the kernel dropped process events (socket buffer full); counting them")
                continue
            for offset, length in datagrams:
                decoder.decode(ring.buffer, offset, length, out)
            if len(datagrams) < connector.SLOTS:
                break

    def _to_items(self, records: list[Record]) -> list[QueuedItem]:
        items: list[QueuedItem] = []
        append = items.append
        processes = self.processes
        new = _new_item
        # The kernel stamps events on CLOCK_MONOTONIC; convert once per batch.
        epoch_offset = time.time_ns() - time.monotonic_ns()
        for rec in records:
            what = rec[WHAT]
            ts = rec[TIMESTAMP]
            if what == PROC_EVENT_FORK:
                pid = rec[U3]  # child tgid
                if rec[U2] != pid:
                    continue  # a new thread, not a new process
                parent = rec[U1]
                info = processes.forked(pid, parent, ts)
                append(new(CREATED, pid, parent, (ts + epoch_offset) / 1e9, ts, info.image,
                           info.command_line, None, None, False, info.uid, ts, info.euid,
                           info.comm, info.cwd, None, False, None, cgroup_id(info.cgroup),
                           info.cgroup))  # fmt: skip
            elif what == PROC_EVENT_EXEC:
                pid = rec[U1]
                info = processes.executed(pid)
                append(new(EXEC, pid, info.parent_id, (ts + epoch_offset) / 1e9, ts, info.image,
                           info.command_line, None, None, False, info.uid, info.start_ns,
                           info.euid, info.comm, info.cwd, None, False, None,
                           cgroup_id(info.cgroup), info.cgroup))  # fmt: skip
            elif what == PROC_EVENT_EXIT:
                pid = rec[U1]
                if rec[U0] != pid:
                    continue  # a thread ended, not the process
                status = rec[U2]
                if status & 0x7F == 0:  # decode_wait_status, inlined: this runs per event
                    code, sig, core = (status >> 8) & 0xFF, None, False
                else:
                    code, sig, core = None, status & 0x7F, bool(status & 0x80)
                gone = processes.exited(pid)
                if gone is None:
                    append(new(EXITED, pid, rec[U5], (ts + epoch_offset) / 1e9, ts, None, None,
                               code, sig, core, None, 0))  # fmt: skip
                else:
                    append(new(EXITED, pid, rec[U5], (ts + epoch_offset) / 1e9, ts, gone.image,
                               gone.command_line, code, sig, core, gone.uid, gone.start_ns,
                               gone.euid, gone.comm, gone.cwd, None, False, None,
                               cgroup_id(gone.cgroup), gone.cgroup))  # fmt: skip
        return items


def _item_constructor() -> Callable[..., QueuedItem]:
    """A function taking the QueuedItem fields positionally, in declaration order (the ones
    with defaults may be left out).

    QueuedItem is a frozen dataclass: its ``__init__`` sets each field through
    ``object.__setattr__``, the largest single cost of an event in the pipeline (measured in
    docs/performance.md). Instead the fields are stored into a bare twin class with the same
    slots (plain attribute stores, which the interpreter does fastest), and the object then
    becomes a QueuedItem (``__class__`` assignment: same layout, so nothing is copied): an
    identical object in a sixth of the time. Falls back to the class itself if it ever stops
    being a plain slotted dataclass (a ``__post_init__``, no slots, a default factory), or if
    the result differs from what the class builds, so that behaviour cannot drift.
    """
    fields = dataclasses.fields(QueuedItem)
    names = tuple(f.name for f in fields)
    if (
        hasattr(QueuedItem, "__post_init__")
        or names != getattr(QueuedItem, "__slots__", ())
        or any(f.default_factory is not dataclasses.MISSING for f in fields)
    ):
        return QueuedItem
    twin = type("_Fields", (), {"__slots__": names})
    scope: dict[str, Any] = {"new": object.__new__, "twin": twin, "cls": QueuedItem}
    params = []
    for i, f in enumerate(fields):
        if f.default is dataclasses.MISSING:
            params.append(f"a{i}")
        else:
            scope[f"d{i}"] = f.default
            params.append(f"a{i}=d{i}")
    body = "".join(f"    o.{name} = a{i}\n" for i, name in enumerate(names))
    code = f"def make({', '.join(params)}):\n    o = new(twin)\n{body}"
    code += "    o.__class__ = cls\n    return o\n"
    exec(code, scope)
    make: Callable[..., QueuedItem] = scope["make"]
    sample: list[Any] = [object() for _ in names]
    try:
        built = make(*sample)
    except TypeError:  # the layouts differ after all (__class__ assignment refused)
        return QueuedItem
    if type(built) is not QueuedItem or built != QueuedItem(*sample):
        return QueuedItem
    return make


_new_item = _item_constructor()
