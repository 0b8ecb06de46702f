"""Shared pieces of the reliability tests: a replayed connector, a process storm, gauges."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from procobsrv import ApplicationScope, CallbackHandler, EventKind
from procobsrv.linux import connector
from procobsrv.linux import parser as p
from procobsrv.linux.connector import ConnectorSocket
from procobsrv.linux.source import ConnectorSource
from tests.conftest import Collector, require_connector
from tests.core.test_parser import message

# -- a connector whose kernel is a script ------------------------------------------------


def ack(ack_value: int, *, seq: int = 0, cpu: int = 0, error: int = 0) -> bytes:
    """The kernel's answer to a subscription: what = NONE, cn_msg.ack = ours + 1."""
    return message(p.PROC_EVENT_NONE, error.to_bytes(4, "little"), seq=seq, cpu=cpu, ack=ack_value)


class ReplaySocket(ConnectorSocket):
    """A ConnectorSocket whose kernel is a test: datagrams go through a real socket pair.

    SOCK_SEQPACKET keeps datagram boundaries (and reports MSG_TRUNC for oversized ones)
    like netlink, so the real ReceiveRing and recvmmsg are exercised, not a stand-in.
    """

    def __init__(self, *, answer: bool = True, ack_timeout: float = 2.0) -> None:
        super().__init__(ack_timeout=ack_timeout)
        self._answer = answer
        self.kernel: socket.socket | None = None
        self.sent_ops: list[int] = []

    def open(self) -> None:
        ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self._sock, self.kernel = ours, kernel

    def send(self, op: int) -> None:
        self.sent_ops.append(op)
        if op == connector.PROC_CN_MCAST_LISTEN and self._answer:
            self.publish([ack((self._ack + 1) & 0xFFFFFFFF, cpu=0xFFFFFFFF)])

    def publish(self, datagrams: Iterable[bytes]) -> None:
        assert self.kernel is not None
        for d in datagrams:
            self.kernel.send(d)  # blocks while the reader is behind, as a feeder should

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            self.sent_ops.append(connector.PROC_CN_MCAST_IGNORE)
            sock.close()
        if self.kernel is not None:
            self.kernel.close()
            self.kernel = None


def replay_source(
    *, read_proc: bool = False, answer: bool = True, ack_timeout: float = 2.0
) -> tuple[ConnectorSource, ReplaySocket]:
    """A real ConnectorSource (decoder, item building, ProcessTable) fed by a ReplaySocket."""
    source = ConnectorSource(read_proc=read_proc, ack_timeout=ack_timeout)
    replay = ReplaySocket(answer=answer, ack_timeout=ack_timeout)
    source._socket = replay  # the one seam: everything above the socket is the real code
    return source, replay


# -- a process storm with a recorded ground truth ----------------------------------------

_SPAWNER = r"""
import json, os, sys, time
n, seconds = int(sys.argv[1]), float(sys.argv[2])
pids, end = [], time.monotonic() + seconds
while len(pids) < n and time.monotonic() < end:
    pid = os.posix_spawn("/bin/true", ["/bin/true"], {})
    os.waitpid(pid, 0)
    pids.append(pid)
json.dump(pids, sys.stdout)
"""


class Storm:
    """``spawners`` processes each posix_spawn + wait ``/bin/true`` as fast as they can.

    Each child gives exactly three events (fork, exec, exit); the pids are the ground truth.
    """

    def __init__(self, spawners: int = 2, per_spawner: int = 1500, seconds: float = 10.0) -> None:
        # The pid lists go to files, not pipes: a fast machine spawns more pids than a pipe
        # holds, and a spawner blocked on its final write would never end.
        self._outs = [tempfile.TemporaryFile("w+") for _ in range(spawners)]  # noqa: SIM115
        cmd = [sys.executable, "-c", _SPAWNER, str(per_spawner), str(seconds)]
        self._procs = [subprocess.Popen(cmd, stdout=out) for out in self._outs]
        self.pids: set[int] = set()
        self.per_spawner: list[list[int]] = []  # in spawn order

    def running(self) -> bool:
        return any(proc.poll() is None for proc in self._procs)

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()

    def wait(self, timeout: float = 60.0) -> set[int]:
        for proc, out in zip(self._procs, self._outs, strict=True):
            proc.wait(timeout=timeout)
            out.seek(0)
            data = out.read()
            out.close()
            if data:
                self.per_spawner.append(json.loads(data))
                self.pids.update(self.per_spawner[-1])
        return self.pids

    @property
    def spawner_pids(self) -> set[int]:
        return {proc.pid for proc in self._procs}


# -- gauges --------------------------------------------------------------------------------


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def threads_now() -> set[threading.Thread]:
    return set(threading.enumerate())


def wait_until(predicate: object, timeout: float, interval: float = 0.01) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


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
    """The real decoder, also keeping (cpu, seq, what, u0..u3) of every record it hands on."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def decode(self, buf: Any, offset: int, length: int, out: list[p.Record]) -> None:
        first = len(out)
        super().decode(buf, offset, length, out)
        self.seen.extend(
            (r[p.CPU], r[p.CN_SEQ], r[p.WHAT], r[p.U0], r[p.U1], r[p.U2], r[p.U3])
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
