"""Pipeline capacity without the kernel: recorded connector datagrams, replayed.

``record`` captures the raw datagrams of a real storm from a netlink socket subscribed with
procobsrv's own ConnectorSocket/ReceiveRing. ``ReplaySource`` is the real ConnectorSource
with two of its dependencies injected: a ``RecordedSocket`` (no kernel) and a
``RecordedRing`` that hands the recording on, SLOTS at a time (one recvmmsg worth), to the
real Decoder and the real item building (with read_proc=False: no /proc reads, the
processes are long gone), and from there through QueueContainer, ProcessThreadMonitor
and RetrievalThread to a handler.

Run as ``python -m benchmarks.replay CAPTURE REPEAT CPU [SLOW_US QUEUE_LIMIT] [--subscribers N]``:
pins itself to CPU (one core for every thread) and prints one JSON line. With N subscribers
(default 1) the scope's handler is joined by N-1 more no-op handlers (``scope.subscribe``),
all fed by the one kernel-side pipeline.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time
from typing import Any

from procobsrv import ApplicationScope, CallbackHandler, MonitorError, QueuedItem
from procobsrv.linux import connector
from procobsrv.linux.connector import ConnectorSocket, Receive, ReceiveRing
from procobsrv.linux.connector_abi import PROC_CN_MCAST_LISTEN, Record
from procobsrv.linux.connector_source import ConnectorSource
from procobsrv.linux.sync import EventFd
from procobsrv.platform import Batch

_LEN = struct.Struct("=I")


class Recorder:
    """A second subscriber that keeps every datagram's bytes while a storm runs."""

    def __init__(self) -> None:
        self.socket = ConnectorSocket()
        self.ring = ReceiveRing()
        self.datagrams: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Recorder:
        self.socket.open()
        self.socket.send(PROC_CN_MCAST_LISTEN)
        self._thread.start()
        time.sleep(0.2)
        return self

    def _run(self) -> None:
        fd, ring, buf = self.socket.fd, self.ring, self.ring.buffer
        while not self._stop.is_set():
            self.socket.wait_readable(time.monotonic() + 0.05)
            for offset, length in ring.receive(fd):
                self.datagrams.append(bytes(buf[offset : offset + length]))

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)
        self._stop.set()
        self._thread.join()
        self.socket.close()


def save(datagrams: list[bytes], path: str) -> None:
    with open(path, "wb") as f:
        for d in datagrams:
            f.write(_LEN.pack(len(d)) + d)


def load(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    out, pos = [], 0
    while pos < len(data):
        (n,) = _LEN.unpack_from(data, pos)
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


class RecordedSocket(ConnectorSocket):
    """The connector socket with no kernel behind it: an eventfd stands in for its fd and
    stays readable while the recording lasts; the subscription needs no answer."""

    def __init__(self) -> None:
        super().__init__()
        self.ready: EventFd | None = None

    def open(self) -> None:
        self.ready = EventFd()
        self.ready.set()  # always readable until the recording runs out

    @property
    def fd(self) -> int:
        if self.ready is None:
            raise MonitorError("the recorded socket is not open")
        return self.ready.wait_handle

    def subscribe(self, receive: Receive, pending: list[Record]) -> None:
        pass  # nothing to ask: the recording already holds every event

    def close(self) -> None:
        if self.ready is not None:
            self.ready.close()
            self.ready = None


class RecordedRing:
    """Receives the recorded datagrams (repeated) as the ReceiveRing receives live ones."""

    def __init__(self, datagrams: list[bytes], repeat: int) -> None:
        slot = max(len(d) for d in datagrams)
        self.buffer = bytearray(b"".join(d.ljust(slot, b"\0") for d in datagrams))
        self._slots = [(i * slot, len(d)) for i, d in enumerate(datagrams)] * repeat
        self._next = 0
        self._full_round = False

    @property
    def exhausted(self) -> bool:
        return self._next >= len(self._slots)

    def receive(self, fd: int) -> list[tuple[int, int]]:
        # One recvmmsg worth per fetch, as the kernel gives during a storm: a full round is
        # followed by an empty one, which ends the source's receive loop.
        if self._full_round:
            self._full_round = False
            return []
        start, end = self._next, min(self._next + connector.SLOTS, len(self._slots))
        self._next = end
        self._full_round = end - start == connector.SLOTS
        return self._slots[start:end]


class ReplaySource(ConnectorSource):
    """The connector source fed by recorded datagrams instead of the kernel."""

    def __init__(self, datagrams: list[bytes], repeat: int = 1) -> None:
        self.recorded_socket = RecordedSocket()
        self.recording = RecordedRing(datagrams, repeat)
        super().__init__(read_proc=False, socket=self.recorded_socket, ring=self.recording)
        self.produced = 0
        self.exhausted = threading.Event()

    def fetch_batch(self) -> Batch:
        batch = super().fetch_batch()
        self.produced += len(batch.items)
        ready = self.recorded_socket.ready
        if self.recording.exhausted and ready is not None:
            ready.clear()
            self.exhausted.set()
        return batch


class NoOp(CallbackHandler):
    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        pass

    def on_events_lost(self, count: int, param: Any) -> None:
        pass


class Slow(NoOp):
    """A handler that takes ``delay`` seconds per event (sleeps: it holds no CPU)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        time.sleep(self.delay)


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def capacity(
    datagrams: list[bytes], repeat: int, slow_us: float = 0, limit: int = 0, subscribers: int = 1
) -> dict[str, Any]:
    source = ReplaySource(datagrams, repeat)
    handler: CallbackHandler = Slow(slow_us / 1e6) if slow_us else NoOp()
    scope = ApplicationScope.get_instance(handler)
    rss_before = rss_mib()
    rss_peak = rss_before
    cpu0, t0 = time.process_time(), time.perf_counter()
    kwargs: dict[str, Any] = {"queue_limit": limit} if limit else {}
    scope.start_monitoring(source=source, **kwargs)
    others = [scope.subscribe(NoOp(), **kwargs) for _ in range(subscribers - 1)]
    while True:
        time.sleep(0.01)
        rss_peak = max(rss_peak, rss_mib())
        stats = scope.stats()
        # Every event out of the kernel queue (taken, or dropped there by a slow lone
        # handler's bound), and nothing held any more: all delivered or counted.
        taken = stats.received + (stats.queue_overflow if subscribers == 1 else 0)
        if source.exhausted.is_set() and taken >= source.produced and not stats.queued:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    for other in others:
        other.close()
    scope.stop_monitoring()
    stats = scope.stats()
    return {
        "subscribers": subscribers,
        "cpu_us_per_event": cpu / source.produced * 1e6 if source.produced else None,
        "datagrams": len(datagrams) * repeat,
        "items": source.produced,
        "delivered": stats.total,
        "lost": stats.lost,
        "queue_overflow": stats.queue_overflow,
        "queue_limit": limit or None,
        "slow_handler_us": slow_us or None,
        "seconds": wall,
        "cpu_seconds": cpu,
        "events_per_s": stats.total / subscribers / wall,  # each subscriber's
        "deliveries_per_s": stats.total / wall,  # summed over the subscribers
        "events_per_cpu_s": stats.total / cpu if cpu else None,
        "rss_before_mib": rss_before,
        "rss_peak_mib": rss_peak,
        "decoder_lost": source.decoder.lost,
    }


def main() -> None:
    args = sys.argv[1:]
    subscribers = 1
    if "--subscribers" in args:
        at = args.index("--subscribers")
        subscribers = int(args[at + 1])
        del args[at : at + 2]
    path, repeat, cpu = args[0], int(args[1]), int(args[2])
    slow_us = float(args[3]) if len(args) > 3 else 0.0
    limit = int(args[4]) if len(args) > 4 else 0
    os.sched_setaffinity(0, {cpu})  # one core for the whole pipeline (threads inherit it)
    datagrams = load(path)
    print(json.dumps(capacity(datagrams, repeat, slow_us, limit, subscribers)))


if __name__ == "__main__":
    main()
