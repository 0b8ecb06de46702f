"""The article's ProcessThreadMonitor: waits for the kernel's signal and queues what it says."""

from __future__ import annotations

import time

from .container import QueueContainer
from .platform import KernelSource, Platform
from .threads import CustomThread

#: The one bound on batching: during a storm the monitor holds an event back at most this
#: long (seconds) so that one wake-up of each thread moves many events, not one. It holds
#: only while events keep arriving a few at a time: after DENSE_RUN wake-ups in a row, each
#: less than DENSE_GAP_NS after the one before (a storm, not the fork, exec and exit of one
#: process), it lets events gather for HOLD_S before each fetch, for as long as every such
#: fetch brings some, fewer than SMALL_BATCH. A fetch that brings none ends the storm (the
#: monitor goes back to waking on the kernel's signal, so an isolated event is fetched at
#: once); one that brings SMALL_BATCH or more is a backlog, fetched again without waiting.
#: "Isolated" counts every event the source sees: the whole machine (eBPF, connector,
#: driver alike), so another user's storm holds our events too. This is the bound of the
#: API; the console tool's writer adds its own (cli/output.py LINGER): a `watch` line is
#: held HOLD_S + LINGER at most, as docs/architecture.md says.
HOLD_S = 0.004
DENSE_GAP_NS = 1_000_000
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
        run, last = 0, 0
        try:
            while waiter.wait() != 0:  # index 0 is the shutdown event
                now = monotonic_ns()
                run = run + 1 if now - last < DENSE_GAP_NS else 1
                last = now
                fetched = self._fetch()
                if run < DENSE_RUN or not 0 < fetched < SMALL_BATCH:
                    continue
                # A storm: hold events back (HOLD_S at most) while fetches bring a few.
                while 0 < fetched < SMALL_BATCH:
                    if linger.wait(HOLD_S) == 0:
                        break  # asked to stop
                    fetched = self._fetch()
                run, last = 0, monotonic_ns()
            self._fetch()  # what the kernel had already sent when we were asked to stop
        finally:
            linger.close()
            waiter.close()

    def _fetch(self) -> int:
        batch = self.source.fetch_batch()
        if batch.items or batch.lost:
            self.container.append(batch.items, batch.lost)
        return len(batch.items) + batch.lost
