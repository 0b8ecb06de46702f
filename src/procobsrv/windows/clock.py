"""The driver's clock, and how its stamps become wall time.

ProcObsrv.sys stamps every record with the interrupt time (``KeQueryInterruptTime``: 100 ns
units since boot; it counts through sleep and nobody can set it), so the order and the
distance of events survive a change of the wall clock. User mode reads the same counter
with ``QueryInterruptTime``: that is :meth:`DriverSource.monotonic_now_ns`. Wall time is the
stamp plus one offset, FILETIME minus interrupt time, read once when the source opens.
"""

from __future__ import annotations

import ctypes

from . import winapi
from .winapi import WinApi

#: Nanoseconds per interrupt-time (and FILETIME) unit.
UNIT_NS = 100
#: Interrupt-time (and FILETIME) units per second.
UNITS_PER_SECOND = 1_000_000_000 // UNIT_NS


def interrupt_time(api: WinApi) -> int:
    """The interrupt time now, in 100 ns units: what ``KeQueryInterruptTime`` returns."""
    value = winapi.ULONGLONG(0)
    api.QueryInterruptTime(ctypes.byref(value))
    return int(value.value)


def wall_offset(api: WinApi) -> int:
    """FILETIME minus interrupt time now, in 100 ns units.

    The wall clock is read between two precise reads of the interrupt time and paired with
    their midpoint, so the offset is exact to within the time one call takes.
    """
    before, after, now = winapi.ULONGLONG(0), winapi.ULONGLONG(0), winapi.FILETIME()
    api.QueryInterruptTimePrecise(ctypes.byref(before))
    api.GetSystemTimePreciseAsFileTime(ctypes.byref(now))
    api.QueryInterruptTimePrecise(ctypes.byref(after))
    return now.value - (int(before.value) + int(after.value)) // 2
