"""The connector's kernel played by a test: crafted datagrams, a replayed socket, and a few
helpers for the real connector (a monitoring scope, flushing every CPU, a broken socket)."""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from procobsrv import ApplicationScope, CallbackHandler, EventKind
from procobsrv.linux import connector_abi as abi
from procobsrv.linux import connector_decoder as p
from procobsrv.linux.connector import DEFAULT_ACK_TIMEOUT, ConnectorSocket
from procobsrv.linux.connector_source import ConnectorSource
from tests.fakes.availability import require_connector
from tests.fakes.collector import Collector

# -- crafted datagrams --------------------------------------------------------------------


def message(
    what: int,
    union: bytes,
    *,
    cpu: int = 0,
    seq: int = 0,
    ack: int = 0,
    ts: int = 123,
    idx: int = 1,
    cn_len: int | None = None,
) -> bytes:
    """One netlink message as the kernel sends it: nlmsghdr, cn_msg, proc_event's header,
    then ``union`` (the event's data, as given: a test may make it short or odd)."""
    header = abi.proc_event(what=what, cpu=cpu, timestamp_ns=ts)
    event = bytes(header)[: abi.EVENT_HEADER_LEN] + union
    cn = abi.cn_msg(
        id=abi.cb_id(idx=idx, val=abi.CN_VAL_PROC),
        seq=seq,
        ack=ack,
        len=len(event) if cn_len is None else cn_len,
    )
    body = bytes(cn) + event
    nl = abi.nlmsghdr(nlmsg_len=ctypes.sizeof(abi.nlmsghdr) + len(body), nlmsg_type=abi.NLMSG_DONE)
    return bytes(nl) + body


def fork_data(child: int, parent: int) -> bytes:
    """proc_event's union holding a fork of process ``child`` (its own thread-group leader)."""
    fork = abi.fork_proc_event(
        parent_pid=parent, parent_tgid=parent, child_pid=child, child_tgid=child
    )
    return bytes(abi.event_data(fork=fork))


def fork(child: int, parent: int, **kw: int) -> bytes:
    return message(abi.PROC_EVENT_FORK, fork_data(child, parent), **kw)


def decode(data: bytes, decoder: p.Decoder | None = None) -> list[abi.Record]:
    out: list[abi.Record] = []
    (decoder or p.Decoder()).decode(data, 0, len(data), out)
    return out


# -- a connector whose kernel is a script ------------------------------------------------


def ack(ack_value: int, *, seq: int = 0, cpu: int = 0, error: int = 0) -> bytes:
    """The kernel's answer to a subscription: what = NONE, cn_msg.ack = ours + 1."""
    return message(
        abi.PROC_EVENT_NONE, error.to_bytes(4, "little"), seq=seq, cpu=cpu, ack=ack_value
    )


class ReplaySocket(ConnectorSocket):
    """A ConnectorSocket whose kernel is a test: datagrams go through a real socket pair.

    SOCK_SEQPACKET keeps datagram boundaries (and reports MSG_TRUNC for oversized ones)
    like netlink, so the real ReceiveRing, recvmmsg and handshake are exercised, not a
    stand-in: only the socket the ConnectorSocket opens, and the kernel's answer, differ.
    """

    def __init__(self, *, answer: bool = True, ack_timeout: float = DEFAULT_ACK_TIMEOUT) -> None:
        super().__init__(ack_timeout=ack_timeout, new_socket=self._socket_pair)
        self._answer = answer
        self.kernel: socket.socket | None = None
        self.sent_ops: list[int] = []

    def _socket_pair(self) -> socket.socket:
        ours, self.kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        return ours

    def send(self, op: int) -> None:
        """The kernel's side of a (un)subscription: answer LISTEN with our ack."""
        self.sent_ops.append(op)
        if op == abi.PROC_CN_MCAST_LISTEN and self._answer:
            self.publish([ack(self.expected_ack, cpu=abi.NO_CPU)])

    def publish(self, datagrams: Iterable[bytes]) -> None:
        assert self.kernel is not None
        for d in datagrams:
            self.kernel.send(d)  # blocks while the reader is behind, as a feeder should

    def close(self) -> None:
        super().close()
        if self.kernel is not None:
            self.kernel.close()
            self.kernel = None


def replay_source(
    *,
    read_proc: bool = False,
    answer: bool = True,
    ack_timeout: float = DEFAULT_ACK_TIMEOUT,
    socket: ReplaySocket | None = None,
    decoder: p.Decoder | None = None,
) -> tuple[ConnectorSource, ReplaySocket]:
    """A real ConnectorSource (handshake, decoder, item building, ProcessTable) fed by a
    ReplaySocket (``socket``, or a new one), injected through the source's constructor."""
    replay = ReplaySocket(answer=answer, ack_timeout=ack_timeout) if socket is None else socket
    source = ConnectorSource(read_proc=read_proc, socket=replay, decoder=decoder)
    return source, replay


# -- the real kernel ----------------------------------------------------------------------


@contextmanager
def monitoring(
    handler: CallbackHandler, param: Any = None, **kw: Any
) -> Iterator[ApplicationScope]:
    """ApplicationScope running ``handler`` (on the real connector unless ``source=`` is given)."""
    if "source" not in kw:
        require_connector()
        kw["source"] = "connector"
    scope = ApplicationScope.get_instance(handler)
    assert scope.start_monitoring(param, **kw)
    try:
        yield scope
    finally:
        scope.stop_monitoring()


class RecordingDecoder(p.Decoder):
    """The real decoder, also keeping (cpu, seq, what, the union's first four 32-bit words)
    of every record it hands on: fork's parent_pid, parent_tgid, child_pid, child_tgid;
    exec's process_pid, process_tgid; exit's process_pid, process_tgid, exit_code, ..."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def decode(self, buf: Any, offset: int, length: int, out: list[abi.Record]) -> None:
        first = len(out)
        super().decode(buf, offset, length, out)
        self.seen.extend(
            (
                r[abi.CPU],
                r[abi.CN_SEQ],
                r[abi.WHAT],
                *r[abi.FORK_PARENT_PID : abi.FORK_CHILD_TGID + 1],
            )
            for r in out[first:]
        )


def flush_cpus(collector: Collector, timeout: float = 10.0) -> None:
    """Make every CPU emit an event and wait until it is delivered.

    A lost message is only noticed when the next message from the same CPU arrives, and
    delivery is in order per CPU: once these exits are in, everything before them is too.
    """
    taskset = shutil.which("taskset")
    assert taskset is not None, "taskset (util-linux) is needed to pin a process to a CPU"
    deadline = time.monotonic() + timeout
    for cpu in sorted(os.sched_getaffinity(0)):
        while True:
            child = subprocess.Popen([taskset, "-c", str(cpu), "/bin/true"])
            child.wait()
            if collector.wait_for(lambda c=child: bool(collector.of(c.pid, EventKind.EXITED)), 1):
                break  # (this flusher's own events may be lost under load: then try again)
            assert time.monotonic() < deadline, f"no event from cpu {cpu} got through"


def break_connector_socket(fd: int) -> None:
    """Make a running monitor's receive fail for real: its netlink socket's fd becomes a pipe.

    A poll() already asleep keeps waiting on the old socket, so a process event is started
    to wake it; the receive that follows finds the pipe (ENOTSOCK).
    """
    r, w = os.pipe()
    os.dup2(r, fd)
    os.close(r)
    os.close(w)
    subprocess.run(["/bin/true"], check=True)
