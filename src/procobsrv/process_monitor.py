"""The article's ProcessThreadMonitor: waits for the kernel's signal and queues what it says."""

from __future__ import annotations

import time

from .container import QueueContainer
from .platform import KernelSource, Platform
from .threads import CustomThread

#: Adaptive coalescing (interrupt moderation): when DENSE_RUN wake-ups in a row come less than
#: DENSE_GAP_NS apart and bring small batches (a storm, not the fork/exec/exit of one process,
#: and not a backlog that already arrives in bulk), the monitor lets events gather for
#: COALESCE_S before each fetch, so that one wake-up and one hand-off carry many events
#: instead of one. An event then waits at most COALESCE_S longer; idle latency is untouched.
#: Measured in docs/performance.md: wake-ups were the largest cost during a storm.
COALESCE_S = 0.001
DENSE_GAP_NS = 2_000_000
DENSE_RUN = 8
SMALL_BATCH = 64


class ProcessThreadMonitor(CustomThread):
    """Sleeps on {shutdown, kernel source} at once; on news, fetches a batch and appends it.

    If the source fails (the kernel side went away, a broken driver), the failure is passed
    down the queue, behind the events already in it, so that the handler hears of it.
    """

    def __init__(self, platform: Platform, source: KernelSource, container: QueueContainer) -> None:
        super().__init__(platform, "procobsrv-monitor")
        self.source = source
        self.container = container

    def run(self) -> None:
        try:
            self._pump()
        except BaseException as exc:
            self.container.fail(exc)
            raise

    def _pump(self) -> None:
        waiter = self.platform.new_waiter([self.shutdown.wait_handle, self.source.wait_handle])
        linger = self.platform.new_waiter([self.shutdown.wait_handle])
        monotonic_ns = time.monotonic_ns
        dense, last, size = 0, 0, 0
        try:
            while waiter.wait() != 0:  # index 0 is the shutdown event
                now = monotonic_ns()
                dense = dense + 1 if now - last < DENSE_GAP_NS and size < SMALL_BATCH else 0
                last = now
                if dense >= DENSE_RUN:
                    linger.wait(COALESCE_S)  # returns at once when asked to stop
                size = self._fetch()
            self._fetch()  # what the kernel had already sent when we were asked to stop
        finally:
            linger.close()
            waiter.close()

    def _fetch(self) -> int:
        batch = self.source.fetch_batch()
        if batch.items or batch.lost:
            self.container.append(batch.items, batch.lost)
        return len(batch.items)
