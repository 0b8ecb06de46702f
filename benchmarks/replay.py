"""Pipeline capacity without the kernel: recorded connector datagrams, replayed.

``record`` captures the raw datagrams of a real storm from a netlink socket subscribed with
procobsrv's own ConnectorSocket/ReceiveRing. ``ReplaySource`` is a KernelSource that feeds
them, SLOTS at a time (one recvmmsg worth), to the real Decoder and the real ConnectorSource
item building (with read_proc=False: no /proc reads, the processes are long gone), and from
there through QueueContainer, ProcessThreadMonitor and RetrievalThread to a handler.

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

from procobsrv import ApplicationScope, CallbackHandler, QueuedItem
from procobsrv.linux import connector
from procobsrv.linux.connector import ConnectorSocket, ReceiveRing
from procobsrv.linux.parser import Record
from procobsrv.linux.source import ConnectorSource
from procobsrv.linux.sync import EventFd

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
        self.socket.send(connector.PROC_CN_MCAST_LISTEN)
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


class ReplaySource(ConnectorSource):
    """The connector source with the socket replaced by recorded datagrams (repeated)."""

    def __init__(self, datagrams: list[bytes], repeat: int = 1) -> None:
        super().__init__(read_proc=False)
        slot = max(len(d) for d in datagrams)
        self._buffer = bytearray(b"".join(d.ljust(slot, b"\0") for d in datagrams))
        self._slots = [(i * slot, len(d)) for i, d in enumerate(datagrams)] * repeat
        self._next = 0
        self._ready: EventFd | None = None
        self.produced = 0
        self.exhausted = threading.Event()

    def open(self) -> None:
        self._ready = EventFd()
        self._ready.set()  # always readable until the recording runs out

    @property
    def wait_handle(self) -> int:
        assert self._ready is not None
        return self._ready.wait_handle

    def _receive(self, out: list[Record]) -> None:
        # One recvmmsg worth per fetch, as ConnectorSource._receive gets from the kernel.
        start, end = self._next, min(self._next + connector.SLOTS, len(self._slots))
        decode, buf = self.decoder.decode, self._buffer
        for offset, length in self._slots[start:end]:
            decode(buf, offset, length, out)
        self._next = end

    def fetch_batch(self):  # type: ignore[no-untyped-def]
        batch = super().fetch_batch()
        self.produced += len(batch.items)
        if self._next >= len(self._slots) and self._ready is not None:
            self._ready.clear()
            self.exhausted.set()
        return batch

    def close(self) -> None:
        if self._ready is not None:
            self._ready.close()
            self._ready = None


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
        # Every event out of the kernel queue, and every window empty: all delivered.
        if source.exhausted.is_set() and stats.received >= source.produced and not stats.queued:
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
