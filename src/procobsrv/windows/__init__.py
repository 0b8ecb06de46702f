"""The Windows side: ProcObsrv.sys and kernel32 objects, through ctypes only.

Nothing here is imported by ``import procobsrv``; :func:`procobsrv.host.current_platform`
imports this package on Windows only. The modules import cleanly anywhere (the tests run on
Linux), but calling into kernel32/advapi32 needs Windows.
"""

from __future__ import annotations

import functools

from ..platform import Platform
from .source import DriverSource
from .sync import Win32Event, Win32Mutex, Win32Waiter

#: No real-time threads and no fork(): the Platform's defaults say so.
PLATFORM = Platform(
    name="windows",
    new_event=Win32Event,
    new_mutex=Win32Mutex,
    new_waiter=Win32Waiter,
    # As the article's ConsCtl: load the bundled driver when it is not running, undo on close.
    new_source=functools.partial(DriverSource, load_driver=True),
    default_source="driver",
)

__all__ = ["PLATFORM", "DriverSource", "Win32Event", "Win32Mutex", "Win32Waiter"]
