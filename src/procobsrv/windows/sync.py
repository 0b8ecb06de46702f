"""Win32 kernel objects for the framework: manual-reset event, mutex, WaitForMultipleObjects.

With these the QueueContainer runs on kernel32 mutex/event objects, as in the article, and
the monitor thread waits on the driver's named event and its own shutdown event at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
from collections.abc import Sequence

from . import winapi
from .winapi import WinApi

log = logging.getLogger(__name__)

#: Milliseconds per second: the unit of every Win32 wait timeout.
MS_PER_SECOND = 1000.0


def wait_milliseconds(timeout: float | None) -> int:
    """A ``dwMilliseconds`` for ``timeout`` seconds: INFINITE for None, rounded up, clamped."""
    if timeout is None:
        return winapi.INFINITE
    if timeout <= 0:
        return 0
    return min(math.ceil(timeout * MS_PER_SECOND), winapi.INFINITE - 1)


class _Handle:
    """Owns one HANDLE; :meth:`close` releases it once."""

    def __init__(self, api: WinApi | None) -> None:
        self._api = api if api is not None else winapi.api()
        self._handle: int | None = None

    @property
    def handle(self) -> int:
        if self._handle is None:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._handle

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            self._api.CloseHandle(handle)

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            with contextlib.suppress(OSError):  # interpreter shutdown: nothing to do
                self.close()


class Win32Event(_Handle):
    """A manual-reset event (``CreateEventW``), initially not signalled."""

    def __init__(self, api: WinApi | None = None) -> None:
        super().__init__(api)
        self._handle = int(self._api.CreateEventW(None, True, False, None))

    @property
    def wait_handle(self) -> int:
        return self.handle

    def set(self) -> None:
        self._api.SetEvent(self.handle)

    def clear(self) -> None:
        self._api.ResetEvent(self.handle)

    def is_set(self) -> bool:
        return int(self._api.WaitForSingleObject(self.handle, 0)) == winapi.WAIT_OBJECT_0


class Win32Mutex(_Handle):
    """An unnamed kernel mutex (``CreateMutexW``) used as a context manager.

    Like every Win32 mutex it is recursive for its owning thread. An abandoned mutex (its
    owner thread ended while holding it) is acquired and logged: the data it guards may be
    half-updated.
    """

    def __init__(self, api: WinApi | None = None) -> None:
        super().__init__(api)
        self._handle = int(self._api.CreateMutexW(None, False, None))

    def acquire(self) -> None:
        """Wait until this thread owns the mutex (``WaitForSingleObject``, INFINITE)."""
        result = int(self._api.WaitForSingleObject(self.handle, winapi.INFINITE))
        if result == winapi.WAIT_ABANDONED_0:
            log.warning("acquired an abandoned mutex: its previous owner thread ended holding it")
        elif result != winapi.WAIT_OBJECT_0:
            raise winapi.WinApiError(winapi.ERROR_GEN_FAILURE, "WaitForSingleObject")

    def release(self) -> None:
        """Give up one ownership (``ReleaseMutex``); a thread that does not own it gets
        :class:`~procobsrv.windows.winapi.WinApiError` (ERROR_NOT_OWNER)."""
        self._api.ReleaseMutex(self.handle)

    def __enter__(self) -> Win32Mutex:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Win32Waiter:
    """Waits for the first of a fixed set of HANDLEs (``WaitForMultipleObjects``, wait-any)."""

    def __init__(self, handles: Sequence[int], api: WinApi | None = None) -> None:
        if not 1 <= len(handles) <= winapi.MAXIMUM_WAIT_OBJECTS:
            raise ValueError(
                f"WaitForMultipleObjects takes 1 to {winapi.MAXIMUM_WAIT_OBJECTS} handles, "
                f"got {len(handles)}"
            )
        self._api = api if api is not None else winapi.api()
        self._count = len(handles)
        self._array: ctypes.Array[ctypes.c_void_p] | None = (ctypes.c_void_p * self._count)(
            *handles
        )

    def wait(self, timeout: float | None = None) -> int | None:
        """Index of the signalled handle (the lowest when several are), None on timeout."""
        if self._array is None:
            raise ValueError("Win32Waiter is closed")
        result = int(
            self._api.WaitForMultipleObjects(
                self._count, self._array, False, wait_milliseconds(timeout)
            )
        )
        if result == winapi.WAIT_TIMEOUT:
            return None
        if winapi.WAIT_OBJECT_0 <= result < winapi.WAIT_OBJECT_0 + self._count:
            return result - winapi.WAIT_OBJECT_0
        if winapi.WAIT_ABANDONED_0 <= result < winapi.WAIT_ABANDONED_0 + self._count:
            index = result - winapi.WAIT_ABANDONED_0
            log.warning("wait satisfied by an abandoned mutex (index %d)", index)
            return index
        raise winapi.WinApiError(winapi.ERROR_GEN_FAILURE, "WaitForMultipleObjects")

    def close(self) -> None:
        """The waiter owns no handle; it only forgets the array."""
        self._array = None
