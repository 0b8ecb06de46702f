"""The Windows publisher: ProcObsrv.sys's records, as QueuedItems.

Lifecycle, as the article's ConsCtl did it: load the driver if it is not running (and undo
that on close), open ``\\\\.\\ProcObsrv``, check the ABI, drain what a previous client left
queued, open ``Global\\ProcObsrvProcessEvent`` for the monitor to wait on, activate.

Loss accounting: the driver numbers every notification, also the ones it drops, so a gap in
the delivered sequence numbers is exactly the records dropped before the last one delivered;
its ``dropped`` counter also knows drops after it. Each batch reports what either source
newly knows (the larger of the two totals minus what was already reported), so nothing is
counted twice and nothing waits for the next delivered record to be reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack

from ..errors import MonitorError
from ..events import QueuedItem
from ..platform import Batch, KernelSource, not_open
from . import clock, contract, winapi
from .device import Device, DriverRecord
from .installer import DriverService, LoadedDriver
from .winapi import WinApi

log = logging.getLogger(__name__)

#: GET_EVENTS calls per fetch at most: bounds the time before a batch is handed on in a storm
#: (the driver keeps its event signalled, so the monitor comes straight back for the rest).
MAX_READS = 16
#: GET_EVENTS calls at most to drain what a previous client left in the queue.
MAX_STALE_READS = 256
#: Start times remembered at most (pid -> start_ns, to pair exits with their start). Lost exit
#: records would otherwise keep their entries forever; the oldest entry goes first.
MAX_TRACKED = 65536


class DriverSource(KernelSource):
    """Process start/exit records from ProcObsrv.sys."""

    name = "driver"

    def __init__(
        self,
        *,
        api: WinApi | None = None,
        load_driver: bool = True,
        service: DriverService | None = None,
        buffer_size: int = contract.RECOMMENDED_EVENTS_BUFFER,
        activate_flags: int = 0,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self._api = api if api is not None else winapi.api()
        self._load_driver = load_driver
        self._service = service
        self._buffer_size = buffer_size
        self._activate_flags = activate_flags
        #: Undoes what open() did to load the driver (nothing when it was running already).
        self._loaded: ExitStack | None = None
        self._device: Device | None = None
        self._event: int | None = None
        self._active = False
        self._last_sequence = 0
        self._dropped_base = 0
        self._gaps = 0  # records missing from the delivered sequence since open
        self._reported = 0  # losses already handed to the framework
        self._starts: dict[int, int] = {}  # pid -> start_ns of the processes we saw start
        self._max_tracked = max_tracked
        self._wall_offset = 0  # FILETIME minus interrupt time, read at open
        #: The driver's stats as last read (None before open).
        self.stats: contract.Stats | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def open(self) -> None:
        if self._device is not None:
            raise MonitorError("the driver source is already open")
        self._gaps = self._reported = 0  # a new session: its losses are counted from here
        try:
            if self._load_driver:
                service = self._service or DriverService(api=self._api)
                self._loaded = ExitStack()
                self._loaded.enter_context(LoadedDriver(service))
            self._device = Device(self._api, buffer_size=self._buffer_size)
            self._device.open()
            stats = self._device.check_abi()
            if stats.state & contract.STATE_ACTIVE:
                log.warning("the driver was left active by a previous client; deactivating")
                self._device.deactivate()
            stale = self._drain_stale()
            if stale:
                log.info("discarded %d records a previous client left queued", stale)
            stats = self._device.stats()
            self._last_sequence = stats.notified
            self._dropped_base = stats.dropped
            self._event = self._device.open_event()
            self._wall_offset = clock.wall_offset(self._api)
            self._device.activate(self._activate_flags)
            self._active = True
            self.stats = stats = self._device.stats()
            log.info(
                "ProcObsrv active (%s notify routine), queue of %d bytes",
                "Ex" if stats.state & contract.STATE_NOTIFY_EX else "classic",
                stats.capacity_bytes,
            )
        except BaseException:
            try:
                self.close()
            except MonitorError as exc:  # the reason open failed is what the caller needs
                log.warning("%s", exc)
            raise

    def _drain_stale(self) -> int:
        assert self._device is not None
        discarded = 0
        for _ in range(MAX_STALE_READS):
            records, returned = self._device.read()
            discarded += len(records)
            if self._device.drained(returned):
                break
        return discarded

    @property
    def wait_handle(self) -> int:
        if self._event is None:
            raise not_open("driver")
        return self._event

    def close(self) -> None:
        """Deactivate, close the event and the device, unload what open() loaded.

        Every step runs whatever an earlier one raised; the first failure is then raised as a
        MonitorError (a driver left loaded is reported by LoadedDriver itself).
        """
        device, self._device = self._device, None
        event, self._event = self._event, None
        loaded, self._loaded = self._loaded, None
        active, self._active = self._active, False
        self._starts.clear()
        steps: list[tuple[str, Callable[[], object]]] = []
        if device is not None:
            if active:
                steps.append(("deactivate the driver", device.deactivate))
            steps.append(("close the device", device.close))
        if event is not None:
            steps.append(("close the driver's event", lambda: self._api.CloseHandle(event)))
        if loaded is not None:
            steps.append(("unload the driver", loaded.close))
        failures: list[tuple[str, Exception]] = []
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # every step must run; the first failure is raised below
                log.warning("could not %s: %s", what, exc)
                failures.append((what, exc))
        if failures:
            what, first = failures[0]
            raise MonitorError(
                f"closing the driver source failed: could not {what}: {first}"
                + (f" (and {len(failures) - 1} more step(s))" if len(failures) > 1 else "")
            ) from first

    def monotonic_now_ns(self) -> int:
        """The interrupt time now, in ns: the clock the driver stamps records with."""
        return clock.interrupt_time(self._api) * clock.UNIT_NS

    @property
    def tracked(self) -> int:
        """Processes whose start time is remembered (bounded by ``max_tracked``)."""
        return len(self._starts)

    # --- events --------------------------------------------------------------------------
    def fetch_batch(self) -> Batch:
        device = self._device
        if device is None:
            raise not_open("driver")
        items: list[QueuedItem] = []
        for _ in range(MAX_READS):
            records, returned = device.read()
            for record in records:
                item = self._convert(record)
                if item is not None:
                    items.append(item)
            if device.drained(returned):
                break
        stats = self.stats = device.stats()
        known = max(self._gaps, stats.dropped - self._dropped_base)
        lost, self._reported = max(0, known - self._reported), max(known, self._reported)
        if lost:
            log.debug("driver lost %d records (sequence gaps %d)", lost, self._gaps)
        return Batch(items, lost)

    def _convert(self, record: DriverRecord) -> QueuedItem | None:
        expected = self._last_sequence + 1
        if record.sequence < expected:
            log.warning("ignoring record %d: already past %d", record.sequence, expected - 1)
            return None
        self._gaps += record.sequence - expected
        self._last_sequence = record.sequence
        if record.kind == contract.KIND_CREATE:
            item = record.to_item(wall_offset=self._wall_offset)
            self._remember_start(record.pid, item.start_ns)
            return item
        return record.to_item(self._starts.pop(record.pid, 0), wall_offset=self._wall_offset)

    def _remember_start(self, pid: int, start_ns: int) -> None:
        starts = self._starts
        starts.pop(pid, None)  # a reused pid: its earlier exit was lost
        if len(starts) >= self._max_tracked:
            del starts[next(iter(starts))]  # the oldest: its exit was most likely lost
        starts[pid] = start_ns
