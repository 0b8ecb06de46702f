"""The kernel's per-task exit statistics (genetlink family TASKSTATS), to widen a race.

Between an exiting thread's decrement of ``signal->live`` and the ``sched_process_exit``
tracepoint, ``do_exit`` calls ``taskstats_exit``: with a listener registered for the CPU,
that thread builds a statistics message and sends it under the CPU's listener rwsem (read).
:func:`registered` keeps such a listener (never read: the kernel's sends to it fail once its
buffer is full, after the work); :func:`churning` runs a process that registers and
deregisters another in a loop, each time taking that rwsem for writing, so exiting threads
sleep inside that window while their siblings go on dying. Root only (CAP_NET_ADMIN).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
TASKSTATS_CMD_GET = 1
TASKSTATS_CMD_ATTR_REGISTER_CPUMASK = 3
TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK = 4
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
GENL = struct.Struct("=BBH")  # genlmsghdr: cmd, version, reserved
ATTR = struct.Struct("=HH")  # nlattr: len, type
ROOT = Path(__file__).resolve().parents[2]
SO_RCVBUFFORCE = 33  # socket.h: SO_RCVBUF beyond rmem_max (CAP_NET_ADMIN)


def attribute(kind: int, payload: bytes) -> bytes:
    size = ATTR.size + len(payload)
    return ATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


class Taskstats:
    """A genetlink socket that speaks to the TASKSTATS family."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        # Room for the answers among the statistics of a busy machine; never wait forever.
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
        self.sock.settimeout(10)
        self.sock.bind((0, 0))
        self._seq = 0
        self.family = self._family_id()

    def close(self) -> None:
        self.sock.close()

    def request(self, family: int, cmd: int, attributes: bytes) -> bytes:
        """Send a request and return its answer (statistics received meanwhile skipped)."""
        self._seq += 1
        body = GENL.pack(cmd, 1, 0) + attributes
        flags = NLM_F_REQUEST | NLM_F_ACK
        self.sock.send(HEADER.pack(HEADER.size + len(body), family, flags, self._seq, 0) + body)
        while True:
            try:
                reply = self.sock.recv(65536)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # statistics overflowed it: not our answer
                    continue
                raise
            _, kind, _, seq, _ = HEADER.unpack_from(reply)
            if seq == self._seq and kind in (NLMSG_ERROR, family):
                return reply

    def _family_id(self) -> int:
        name = attribute(CTRL_ATTR_FAMILY_NAME, b"TASKSTATS\0")
        reply = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, name)
        at = HEADER.size + GENL.size
        while at + ATTR.size <= len(reply):
            size, kind = ATTR.unpack_from(reply, at)
            if kind == CTRL_ATTR_FAMILY_ID:
                family: int = struct.unpack_from("=H", reply, at + ATTR.size)[0]
                return family
            at += max(size + (-size % 4), ATTR.size)
        raise OSError(errno.ENOENT, "the kernel has no TASKSTATS family")

    def listen(self, cpus: str, on: bool = True) -> None:
        """Register (or deregister) this socket for the exits on ``cpus`` ("0-1")."""
        kind = TASKSTATS_CMD_ATTR_REGISTER_CPUMASK if on else TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK
        reply = self.request(self.family, TASKSTATS_CMD_GET, attribute(kind, cpus.encode() + b"\0"))
        (error,) = struct.unpack_from("=i", reply, HEADER.size)
        if error:
            raise OSError(-error, os.strerror(-error))


def all_cpus() -> str:
    """The online CPUs, as the kernel lists them ("0-1")."""
    return Path("/sys/devices/system/cpu/online").read_text().strip()


def churn(cpus: str) -> None:
    """Register and deregister for ``cpus`` until killed (run in its own process)."""
    stats = Taskstats()
    while True:
        stats.listen(cpus)
        stats.listen(cpus, on=False)


@contextmanager
def registered() -> Iterator[Taskstats]:
    """A listener for every CPU's exits, for the duration."""
    stats = Taskstats()
    try:
        stats.listen(all_cpus())
        yield stats
    finally:
        stats.close()


@contextmanager
def churning() -> Iterator[subprocess.Popen[bytes]]:
    """A process registering and deregistering for every CPU, for the duration."""
    code = f"from tests.fakes.taskstats import churn; churn({all_cpus()!r})"
    churner = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        yield churner
    finally:
        churner.send_signal(signal.SIGKILL)
        churner.wait()
