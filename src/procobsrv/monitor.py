"""The article's ProcessThreadMonitor: waits for the kernel's signal and queues what it says."""

from __future__ import annotations

from .container import QueueContainer
from .platform import KernelSource, Platform
from .threads import CustomThread


class ProcessThreadMonitor(CustomThread):
    """Sleeps on {shutdown, kernel source} at once; on news, fetches a batch and appends it."""

    def __init__(self, platform: Platform, source: KernelSource, container: QueueContainer) -> None:
        super().__init__(platform, "procobsrv-monitor")
        self.source = source
        self.container = container

    def run(self) -> None:
        waiter = self.platform.new_waiter([self.shutdown.wait_handle, self.source.wait_handle])
        try:
            while waiter.wait() != 0:  # index 0 is the shutdown event
                self._fetch()
            self._fetch()  # what the kernel had already sent when we were asked to stop
        finally:
            waiter.close()

    def _fetch(self) -> None:
        batch = self.source.fetch_batch()
        if batch.items or batch.lost:
            self.container.append(batch.items, batch.lost)
