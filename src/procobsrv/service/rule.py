"""Who sees what through ``procobsrv serve``: decided by the service, from the kernel's
credentials of each connection, never from anything the client says.

The rule: root (uid 0) and the members of the service's group (``--group``: the peer's
primary or a supplementary group, as the kernel reports them for the connection) see every
process. Any other user sees only the processes whose real or effective uid is theirs: the
fork, exec and exit of each. An event whose uid the source could not learn is shown to
those who see everything only. Kernel losses are told to every client (the lost events may
have been its own).
"""

from __future__ import annotations

import errno
import grp
import logging
import socket
import struct
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import MonitorError
from ..events import QueuedItem
from ..memory import batch_bytes
from ..subscription import Sieve

log = logging.getLogger(__name__)

#: getsockopt(SOL_SOCKET, SO_PEERGROUPS): the peer's supplementary groups (Linux 4.13+).
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
#: The most supplementary groups the kernel allows a process (NGROUPS_MAX).
_NGROUPS_MAX = 65536


@dataclass(frozen=True)
class Peer:
    """The credentials the kernel recorded for a connection (at its ``connect``)."""

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


def peer_of(connection: socket.socket) -> Peer:
    """SO_PEERCRED and SO_PEERGROUPS of a connected Unix socket."""
    pid, uid, gid = _UCRED.unpack(
        connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return Peer(pid, uid, gid, _peer_groups(connection))


def _peer_groups(connection: socket.socket) -> tuple[int, ...]:
    size = 64 * 4
    while True:
        try:
            raw = connection.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size)
        except OSError as exc:  # ERANGE: more groups than room (the kernel says how many)
            if exc.errno != errno.ERANGE or size >= _NGROUPS_MAX * 4:
                raise
            size *= 4
            continue
        return struct.unpack(f"{len(raw) // 4}I", raw)


def group_id(name: str) -> int:
    """The gid of the group ``name`` (or a number); MonitorError if there is none."""
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise MonitorError(f"no group named {name!r} (groupadd --system {name})") from None


class OwnProcesses:
    """A sieve: the events of one user's processes (real or effective uid). One per uid,
    shared by that user's clients: the batch is the same object for all of them, so the
    answer for the last one is remembered (kept items, bytes)."""

    __slots__ = ("__weakref__", "_last", "_last_kept", "uid")

    def __init__(self, uid: int) -> None:
        self.uid = uid
        self._last: Sequence[QueuedItem] | None = None
        self._last_kept: tuple[Sequence[QueuedItem], int] = ((), 0)

    def __call__(
        self, items: Sequence[QueuedItem], nbytes: int
    ) -> tuple[Sequence[QueuedItem], int]:
        if items is self._last:
            return self._last_kept
        uid = self.uid
        kept = [item for item in items if item.uid == uid or item.euid == uid]
        answer = (items, nbytes) if len(kept) == len(items) else (kept, batch_bytes(kept))
        self._last, self._last_kept = items, answer
        return answer


class Rule:
    """The authorization rule of one service: ``group`` (a gid) sees everything, as root."""

    def __init__(self, group: int | None = None) -> None:
        self.group = group
        self._sieves: weakref.WeakValueDictionary[int, OwnProcesses] = weakref.WeakValueDictionary()

    def sees_all(self, peer: Peer) -> bool:
        if peer.uid == 0:
            return True
        group = self.group
        return group is not None and (peer.gid == group or group in peer.groups)

    def sieve_for(self, peer: Peer) -> Sieve | None:
        """What the peer's subscription keeps of each batch (None: everything)."""
        if self.sees_all(peer):
            return None
        sieve = self._sieves.get(peer.uid)
        if sieve is None:
            sieve = self._sieves[peer.uid] = OwnProcesses(peer.uid)
        return sieve


def describe(peer: Peer) -> str:
    """``uid 1000 pid 4242`` for the log."""
    return f"uid {peer.uid} pid {peer.pid}"
