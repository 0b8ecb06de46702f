"""The Linux kernel-side publisher: procobsrv's eBPF program, the counterpart of ProcObsrv.sys.

:class:`EbpfSource` loads ``bpf/procobsrv.bpf.c`` (shipped compiled), attaches its three
scheduler tracepoints, and reads their records from the ring buffer: every exec carries its
argv, captured in the kernel before the process can end, and its absolute image.

Waking up: the program wakes the consumer when a record lands in an empty buffer, at most
once per ``wakeup_interval``. Records it does not announce are picked up by a timer this
source arms for the same interval after each non-empty batch; :attr:`wait_handle` is an
epoll fd over the ring buffer and that timer. An isolated event wakes the consumer at once;
a storm costs at most one wake-up per interval.
"""

from __future__ import annotations

import logging
import select
from pathlib import Path

from ..events import QueuedItem
from ..platform import Batch, KernelSource
from .bpfprog import BpfProgram
from .ebpf_abi import OBJECT_PATH, po_settings
from .ebpf_decoder import Decoder, Programs
from .libbpf import Libbpf
from .procfs import as_created, snapshot
from .ringbuf import RingReader, TimerFd

log = logging.getLogger(__name__)

DEFAULT_RING_SIZE = 8 << 20
DEFAULT_WAKEUP_INTERVAL = 0.00025
#: Bytes consumed per fetch at most: bounds the time before a batch is handed on.
MAX_FETCH_BYTES = 1 << 20


class EbpfSource(KernelSource):
    """Process events from procobsrv's eBPF program (root, or CAP_BPF + CAP_PERFMON).

    ``parent_filter`` (a pid) reports only the processes whose parent it is: the kernel
    drops the rest before they use the buffer (tests count losses exactly with it).
    """

    def __init__(
        self,
        *,
        ring_size: int = DEFAULT_RING_SIZE,
        wakeup_interval: float = DEFAULT_WAKEUP_INTERVAL,
        parent_filter: int = 0,
        read_proc: bool = True,
        object_path: Path = OBJECT_PATH,
        libbpf: Libbpf | None = None,
    ) -> None:
        self._interval_ns = int(wakeup_interval * 1e9)
        settings = po_settings(
            wakeup_interval_ns=self._interval_ns,
            wakeup_bytes=ring_size // 4,
            parent_filter=parent_filter,
        )
        self.program = BpfProgram(
            ring_size=ring_size, settings=settings, object_path=object_path, lib=libbpf
        )
        self._ring_size = ring_size
        self._read_proc = read_proc
        #: The processes running at open, as CREATED items (for ``ProcessTree.seed``).
        self.running: list[QueuedItem] = []
        self.decoder = Decoder(Programs())
        self._ring: RingReader | None = None
        self._timer: TimerFd | None = None
        self._epoll: select.epoll | None = None
        self._drops = 0
        self._bad = 0
        self._spans: list[tuple[int, int]] = []

    # -- KernelSource -----------------------------------------------------------------
    def open(self) -> None:
        try:
            self.program.open()
            self._ring = RingReader(self.program.events_fd, self._ring_size)
            self._timer = TimerFd()
            self._epoll = select.epoll()
            self._epoll.register(self.program.events_fd, select.EPOLLIN)
            self._epoll.register(self._timer.fd, select.EPOLLIN)
            if self._read_proc:
                running = snapshot()
                self.decoder.programs.seed(running)
                self.running = as_created(running)
        except BaseException:
            self.close()
            raise

    @property
    def wait_handle(self) -> int:
        assert self._epoll is not None, "open() first"
        return self._epoll.fileno()

    def fetch_batch(self) -> Batch:
        ring, timer = self._ring, self._timer
        assert ring is not None and timer is not None, "open() first"
        spans = self._spans
        spans.clear()
        data = ring.read(MAX_FETCH_BYTES, spans)
        items: list[QueuedItem] = []
        if spans:
            self.decoder.decode(data, spans, items)
            timer.arm(self._interval_ns)  # records the program did not announce: see above
        elif timer.armed:
            timer.disarm()
        return Batch(items, self._lost())

    def close(self) -> None:
        epoll, self._epoll = self._epoll, None
        if epoll is not None:
            epoll.close()
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()
        ring, self._ring = self._ring, None
        if ring is not None:
            ring.close()
        self.program.close()

    # -- internals ----------------------------------------------------------------------
    def _lost(self) -> int:
        """New drops in the kernel plus records the decoder refused, since the last call."""
        drops, bad = self.program.drops(), self.decoder.bad
        if bad > self._bad:
            log.warning("skipped %d malformed eBPF records", bad - self._bad)
        lost = drops - self._drops + bad - self._bad
        self._drops, self._bad = drops, bad
        return lost
