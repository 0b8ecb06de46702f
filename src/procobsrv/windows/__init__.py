"""The Windows side: ProcObsrv.sys and kernel32 objects, through ctypes only.

Nothing here is imported by ``import procobsrv``; :func:`procobsrv.platform.current_platform`
imports this package on Windows only. The modules import cleanly anywhere (the tests run on
Linux), but calling into kernel32/advapi32 needs Windows.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..platform import KernelSource, Mutex, Platform, SyncEvent, Waiter
from .source import DriverSource
from .sync import Win32Event, Win32Mutex, Win32Waiter


def _new_event() -> SyncEvent:
    return Win32Event()


def _new_mutex() -> Mutex:
    return Win32Mutex()


def _new_waiter(handles: Sequence[int]) -> Waiter:
    return Win32Waiter(handles)


def _new_source() -> KernelSource:
    # As the article's ConsCtl: load the bundled driver when it is not running, undo on close.
    return DriverSource(load_driver=True)


PLATFORM = Platform(
    name="windows",
    new_event=_new_event,
    new_mutex=_new_mutex,
    new_waiter=_new_waiter,
    new_source=_new_source,
    default_source="driver",
)

__all__ = ["PLATFORM", "DriverSource", "Win32Event", "Win32Mutex", "Win32Waiter"]
