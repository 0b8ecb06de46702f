"""The Linux kernel-side publisher: procobsrv's eBPF program, the counterpart of ProcObsrv.sys.

:class:`EbpfSource` loads ``bpf/procobsrv.bpf.c`` (shipped compiled), attaches its three
scheduler tracepoints, and reads their records from the ring buffer: every exec carries its
argv, captured in the kernel before the process can end, and its absolute image.

Waking up: the kernel wakes the consumer only when a record lands in a buffer the consumer
had emptied (and when a quarter of it is waiting); :attr:`wait_handle` is the ring buffer's
fd, readable while anything is unconsumed. An isolated event wakes the consumer at once;
during a storm ProcessThreadMonitor lingers before each fetch, and the records written
meanwhile wake nobody. A fetch costs no system call: records and the drop count are read
from mapped memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import MonitorError
from ..events import QueuedItem
from ..platform import Batch, KernelSource, not_open
from .bpfprog import BpfProgram
from .ebpf_abi import OBJECT_PATH
from .ebpf_decoder import Decoder, Programs
from .libbpf import Libbpf
from .procfs import as_created, snapshot
from .ringbuf import Reader, open_reader
from .sync import NO_FDS, out_of_fds

log = logging.getLogger(__name__)

DEFAULT_RING_SIZE = 8 << 20
#: A backlog of 1/this of the ring forces a wake-up (the program's ``wakeup_bytes``), so that a
#: lingering consumer is woken well before the ring is full.
_WAKEUP_SHARE = 4
#: Bytes consumed per fetch at most: bounds the time before a batch is handed on.
MAX_FETCH_BYTES = 1 << 20


class EbpfSource(KernelSource):
    """Process events from procobsrv's eBPF program (root, or CAP_BPF + CAP_PERFMON).

    ``parent_filter`` (a pid) reports only the processes whose parent it is: the kernel
    drops the rest before they use the buffer (tests count losses exactly with it).
    """

    name = "ebpf"

    def __init__(
        self,
        *,
        ring_size: int = DEFAULT_RING_SIZE,
        parent_filter: int = 0,
        read_proc: bool = True,
        object_path: Path = OBJECT_PATH,
        libbpf: Libbpf | None = None,
    ) -> None:
        settings = {"wakeup_bytes": ring_size // _WAKEUP_SHARE, "parent_filter": parent_filter}
        self.program = BpfProgram(
            ring_size=ring_size, settings=settings, object_path=object_path, lib=libbpf
        )
        self._ring_size = ring_size
        self._read_proc = read_proc
        #: The processes running at open, as CREATED items (for ``ProcessTree.seed``).
        self.running: list[QueuedItem] = []
        self.decoder = Decoder(Programs())
        self._ring: Reader | None = None
        self._drops = 0
        self._bad = 0
        self._spans: list[tuple[int, int]] = []

    # -- KernelSource -----------------------------------------------------------------
    def open(self) -> None:
        if self._ring is not None:
            raise MonitorError("the eBPF source is already open")
        # A new session: the program loaded now counts its drops from zero, and the
        # processes known from an earlier session may have gone meanwhile.
        self.decoder = Decoder(Programs())
        self._drops = self._bad = 0
        try:
            self.program.open()
            self._ring = open_reader(self.program.lib, self.program.events_fd, self._ring_size)
            if self._read_proc:
                running = snapshot()
                self.decoder.programs.seed(running)
                self.running = as_created(running)
        except OSError as exc:  # the ring's mmap, /proc
            self.close()
            if exc.errno in NO_FDS:
                raise out_of_fds("the eBPF source's ring buffer", exc) from exc
            raise MonitorError(f"cannot set up the eBPF source: {exc}") from exc
        except BaseException:
            self.close()
            raise

    @property
    def wait_handle(self) -> int:
        if self._ring is None:
            raise not_open("eBPF")
        return self.program.events_fd

    def fetch_batch(self) -> Batch:
        ring = self._ring
        if ring is None:
            raise not_open("eBPF")
        spans = self._spans
        spans.clear()
        data = ring.read(MAX_FETCH_BYTES, spans)
        items: list[QueuedItem] = []
        if spans:
            self.decoder.decode(data, spans, items)
        return Batch(items, self._lost())

    def close(self) -> None:
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
