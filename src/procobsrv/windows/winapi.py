"""Every kernel32/advapi32 function procobsrv calls, declared once as data.

Each :class:`Binding` names the function, its DLL, its result type, its arguments (each a C
name and a ctypes type) and the rule that tells failure from success. The types are
fixed-width ctypes types chosen to match the x64 Windows ABI (``DWORD`` is 32 bits there),
never ``ctypes.wintypes``: on Linux its ``DWORD`` is 8 bytes, and the bindings (types and
names) are checked from Linux against the mingw-w64 headers
(``tests/windows/test_winapi_conformance.py``).

:func:`api` applies the table to ``ctypes.WinDLL(..., use_last_error=True)`` on Windows. On
any other system this module imports cleanly (the tests read the table and build
:class:`WinApi` over fakes) but :func:`api` raises :class:`~procobsrv.errors.MonitorError`.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import MonitorError

log = logging.getLogger(__name__)

# --- Fixed-width Windows types (x64 ABI) ----------------------------------------------------
DWORD = ctypes.c_uint32
BOOL = ctypes.c_int32  # WINBOOL: int
HANDLE = ctypes.c_void_p
SC_HANDLE = ctypes.c_void_p
LPVOID = ctypes.c_void_p
LPCWSTR = ctypes.c_wchar_p  # a pointer: 8 bytes on both sides; WCHAR itself is never used
UINT = ctypes.c_uint32
ULONGLONG = ctypes.c_uint64
LPDWORD = ctypes.POINTER(DWORD)
PULONGLONG = ctypes.POINTER(ULONGLONG)
LPHANDLE = ctypes.POINTER(HANDLE)  # const HANDLE *

#: Bytes of one WCHAR (a UTF-16 code unit); ``ctypes.c_wchar`` is 4 bytes off Windows.
WCHAR_BYTES = 2

#: The x64 value of ``INVALID_HANDLE_VALUE`` as ``c_void_p`` returns it.
INVALID_HANDLE_VALUE = (1 << (8 * ctypes.sizeof(ctypes.c_void_p))) - 1


class SERVICE_STATUS(ctypes.Structure):
    """winsvc.h ``SERVICE_STATUS`` (28 bytes)."""

    _fields_ = (
        ("dwServiceType", DWORD),
        ("dwCurrentState", DWORD),
        ("dwControlsAccepted", DWORD),
        ("dwWin32ExitCode", DWORD),
        ("dwServiceSpecificExitCode", DWORD),
        ("dwCheckPoint", DWORD),
        ("dwWaitHint", DWORD),
    )


class QUERY_SERVICE_CONFIGW(ctypes.Structure):
    """winsvc.h ``QUERY_SERVICE_CONFIGW`` (64 bytes on x64); strings point into the buffer."""

    _fields_ = (
        ("dwServiceType", DWORD),
        ("dwStartType", DWORD),
        ("dwErrorControl", DWORD),
        ("lpBinaryPathName", LPVOID),
        ("lpLoadOrderGroup", LPVOID),
        ("dwTagId", DWORD),
        ("lpDependencies", LPVOID),
        ("lpServiceStartName", LPVOID),
        ("lpDisplayName", LPVOID),
    )


class FILETIME(ctypes.Structure):
    """minwindef.h ``FILETIME`` (8 bytes, 4-aligned): 100 ns units since 1601-01-01 UTC."""

    _fields_ = (("dwLowDateTime", DWORD), ("dwHighDateTime", DWORD))

    @property
    def value(self) -> int:
        return (int(self.dwHighDateTime) << 32) | int(self.dwLowDateTime)


LPFILETIME = ctypes.POINTER(FILETIME)
LPSERVICE_STATUS = ctypes.POINTER(SERVICE_STATUS)
LPQUERY_SERVICE_CONFIGW = ctypes.POINTER(QUERY_SERVICE_CONFIGW)

#: Structures declared here, by their C name (checked against the headers).
STRUCTURES: dict[str, type[ctypes.Structure]] = {
    "SERVICE_STATUS": SERVICE_STATUS,
    "QUERY_SERVICE_CONFIGW": QUERY_SERVICE_CONFIGW,
    "FILETIME": FILETIME,
}

# --- Constants (each one checked against the mingw-w64 headers) -----------------------------
GENERIC_READ = 0x80000000
GENERIC_WRITE = 0x40000000
OPEN_EXISTING = 3
FILE_ATTRIBUTE_NORMAL = 0x80
SYNCHRONIZE = 0x00100000
DELETE = 0x00010000
INFINITE = 0xFFFFFFFF
WAIT_OBJECT_0 = 0x0
WAIT_ABANDONED_0 = 0x80
WAIT_TIMEOUT = 0x102
WAIT_FAILED = 0xFFFFFFFF
MAXIMUM_WAIT_OBJECTS = 64

SC_MANAGER_CONNECT = 0x0001
SC_MANAGER_CREATE_SERVICE = 0x0002
SERVICE_QUERY_CONFIG = 0x0001
SERVICE_QUERY_STATUS = 0x0004
SERVICE_START = 0x0010
SERVICE_STOP = 0x0020
SERVICE_ALL_ACCESS = 0xF01FF
SERVICE_KERNEL_DRIVER = 0x1
SERVICE_DEMAND_START = 0x3
SERVICE_ERROR_NORMAL = 0x1
SERVICE_CONTROL_STOP = 0x1
SERVICE_STOPPED = 0x1
SERVICE_START_PENDING = 0x2
SERVICE_STOP_PENDING = 0x3
SERVICE_RUNNING = 0x4
SERVICE_CONTINUE_PENDING = 0x5
SERVICE_PAUSE_PENDING = 0x6
SERVICE_PAUSED = 0x7

ERROR_FILE_NOT_FOUND = 2
ERROR_PATH_NOT_FOUND = 3
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_BAD_COMMAND = 22
ERROR_BAD_LENGTH = 24
ERROR_GEN_FAILURE = 31
ERROR_SHARING_VIOLATION = 32
ERROR_NOT_SUPPORTED = 50
ERROR_INVALID_PARAMETER = 87
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_BAD_EXE_FORMAT = 193
ERROR_MORE_DATA = 234
ERROR_INVALID_FUNCTION = 1
ERROR_SERVICE_REQUEST_TIMEOUT = 1053
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DISABLED = 1058
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_CANNOT_ACCEPT_CTRL = 1061
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_MARKED_FOR_DELETE = 1072
ERROR_SERVICE_EXISTS = 1073
ERROR_DRIVER_BLOCKED = 1275
ERROR_REVISION_MISMATCH = 1306
ERROR_PRIVILEGE_NOT_HELD = 1314
#: Windows SDK winerror.h; mingw-w64's winerror.h lacks it (STATUS_INVALID_IMAGE_HASH mapped).
ERROR_INVALID_IMAGE_HASH = 577

#: Constants whose C name mingw-w64's headers do not define (so the header check skips them).
NOT_IN_MINGW_HEADERS = frozenset({"ERROR_INVALID_IMAGE_HASH"})

_CONSTANT_PREFIXES: tuple[str, ...] = ("GENERIC_", "OPEN_", "FILE_", "SYNCHRONIZE", "DELETE")
_CONSTANT_PREFIXES += ("INFINITE", "WAIT_", "MAXIMUM_", "SC_MANAGER_", "SERVICE_", "ERROR_")


def constants() -> dict[str, int]:
    """Every Win32 constant this module declares, by its C name."""
    return {
        name: value
        for name, value in globals().items()
        if name.startswith(_CONSTANT_PREFIXES) and isinstance(value, int) and name.isupper()
    }


#: Short texts for the codes procobsrv meets (FormatMessage is not available off Windows).
_MESSAGES = {
    ERROR_INVALID_FUNCTION: "Incorrect function",
    ERROR_FILE_NOT_FOUND: "The system cannot find the file specified",
    ERROR_PATH_NOT_FOUND: "The system cannot find the path specified",
    ERROR_ACCESS_DENIED: "Access is denied",
    ERROR_INVALID_HANDLE: "The handle is invalid",
    ERROR_BAD_COMMAND: "The device does not recognize the command",
    ERROR_BAD_LENGTH: "The program issued a command but the command length is incorrect",
    ERROR_GEN_FAILURE: "A device attached to the system is not functioning",
    ERROR_SHARING_VIOLATION: "The process cannot access the file because it is being used "
    "by another process",
    ERROR_NOT_SUPPORTED: "The request is not supported",
    ERROR_INVALID_PARAMETER: "The parameter is incorrect",
    ERROR_INSUFFICIENT_BUFFER: "The data area passed to a system call is too small",
    ERROR_BAD_EXE_FORMAT: "The file is not a valid application for this processor",
    ERROR_MORE_DATA: "More data is available",
    ERROR_INVALID_IMAGE_HASH: "Windows cannot verify the digital signature for this file",
    ERROR_SERVICE_REQUEST_TIMEOUT: "The service did not respond to the request in time",
    ERROR_SERVICE_ALREADY_RUNNING: "An instance of the service is already running",
    ERROR_SERVICE_DISABLED: "The service cannot be started because it is disabled",
    ERROR_SERVICE_DOES_NOT_EXIST: "The specified service does not exist as an installed service",
    ERROR_SERVICE_CANNOT_ACCEPT_CTRL: "The service cannot accept control messages at this time",
    ERROR_SERVICE_NOT_ACTIVE: "The service has not been started",
    ERROR_SERVICE_MARKED_FOR_DELETE: "The specified service has been marked for deletion",
    ERROR_SERVICE_EXISTS: "The specified service already exists",
    ERROR_DRIVER_BLOCKED: "The driver has been blocked from loading",
    ERROR_REVISION_MISMATCH: "Indicates two revision levels are incompatible",
    ERROR_PRIVILEGE_NOT_HELD: "A required privilege is not held by the client",
}

_ERRNO = {
    ERROR_FILE_NOT_FOUND: errno.ENOENT,
    ERROR_PATH_NOT_FOUND: errno.ENOENT,
    ERROR_ACCESS_DENIED: errno.EACCES,
    ERROR_PRIVILEGE_NOT_HELD: errno.EPERM,
    ERROR_INVALID_HANDLE: errno.EBADF,
    ERROR_INVALID_PARAMETER: errno.EINVAL,
    ERROR_SERVICE_EXISTS: errno.EEXIST,
}


class WinApiError(OSError):
    """A failed Win32 call: ``winerror`` is the Windows error code, ``function`` its name.

    The equivalent of ``ctypes.WinError()`` (which exists only on Windows), with the
    function's name in the message.
    """

    def __init__(self, winerror: int, function: str) -> None:
        text = _MESSAGES.get(winerror, "Windows error")
        super().__init__(_ERRNO.get(winerror), f"[WinError {winerror}] {text}")
        self.winerror = winerror
        self.function = function

    def __str__(self) -> str:
        return f"{self.function} failed: {self.strerror}"


# --- The table -------------------------------------------------------------------------------
class Check(enum.Enum):
    """How a function reports failure (then ``GetLastError`` holds the reason)."""

    ZERO = "result is 0 / FALSE / NULL"
    INVALID_HANDLE = "result is NULL or INVALID_HANDLE_VALUE"
    WAIT_FAILED = "result is WAIT_FAILED"
    NEVER = "returns nothing; cannot fail"


@dataclass(frozen=True)
class Binding:
    """One Win32 function: where it lives, its prototype and its failure rule."""

    name: str
    dll: str
    restype: Any  # a ctypes simple type
    args: tuple[tuple[str, Any], ...]  # (the prototype's argument name, its ctypes type)
    check: Check

    @property
    def argtypes(self) -> tuple[Any, ...]:
        """The argument types, in order (what ctypes' ``argtypes`` takes)."""
        return tuple(ctype for _name, ctype in self.args)

    @property
    def argnames(self) -> tuple[str, ...]:
        """The argument names, as the C prototype spells them."""
        return tuple(name for name, _ctype in self.args)

    def failed(self, result: object) -> bool:
        """Whether ``result`` (as ctypes returns it for :attr:`restype`) signals failure."""
        if self.check is Check.ZERO:
            return not result
        if self.check is Check.INVALID_HANDLE:
            return result is None or result in (0, -1, INVALID_HANDLE_VALUE)
        if self.check is Check.NEVER:
            return False
        return result == WAIT_FAILED


K32 = "kernel32"
ADV = "advapi32"
#: The API set that exports QueryInterruptTime[Precise] (Windows 10 and later).
REALTIME = "api-ms-win-core-realtime-l1-1-1"
_P = ctypes.c_void_p  # pointers procobsrv passes as None or a buffer address

# One row per function: name, DLL, result type, then each argument as (C name, ctypes type),
# under the names the mingw-w64 prototypes give (test_winapi_conformance checks them), and
# the failure rule.
# fmt: off
BINDINGS: tuple[Binding, ...] = (
    # kernel32: the device, events, mutexes, waiting.
    Binding("CreateFileW", K32, HANDLE, (
        ("lpFileName", LPCWSTR), ("dwDesiredAccess", DWORD), ("dwShareMode", DWORD),
        ("lpSecurityAttributes", _P), ("dwCreationDisposition", DWORD),
        ("dwFlagsAndAttributes", DWORD), ("hTemplateFile", HANDLE),
    ), Check.INVALID_HANDLE),
    Binding("DeviceIoControl", K32, BOOL, (
        ("hDevice", HANDLE), ("dwIoControlCode", DWORD),
        ("lpInBuffer", LPVOID), ("nInBufferSize", DWORD),
        ("lpOutBuffer", LPVOID), ("nOutBufferSize", DWORD),
        ("lpBytesReturned", LPDWORD), ("lpOverlapped", _P),
    ), Check.ZERO),
    Binding("CloseHandle", K32, BOOL, (("hObject", HANDLE),), Check.ZERO),
    Binding("CreateEventW", K32, HANDLE, (
        ("lpEventAttributes", _P), ("bManualReset", BOOL), ("bInitialState", BOOL),
        ("lpName", LPCWSTR),
    ), Check.ZERO),
    Binding("OpenEventW", K32, HANDLE, (
        ("dwDesiredAccess", DWORD), ("bInheritHandle", BOOL), ("lpName", LPCWSTR),
    ), Check.ZERO),
    Binding("SetEvent", K32, BOOL, (("hEvent", HANDLE),), Check.ZERO),
    Binding("ResetEvent", K32, BOOL, (("hEvent", HANDLE),), Check.ZERO),
    Binding("CreateMutexW", K32, HANDLE, (
        ("lpMutexAttributes", _P), ("bInitialOwner", BOOL), ("lpName", LPCWSTR),
    ), Check.ZERO),
    Binding("ReleaseMutex", K32, BOOL, (("hMutex", HANDLE),), Check.ZERO),
    Binding("WaitForSingleObject", K32, DWORD, (
        ("hHandle", HANDLE), ("dwMilliseconds", DWORD),
    ), Check.WAIT_FAILED),
    Binding("WaitForMultipleObjects", K32, DWORD, (
        ("nCount", DWORD), ("lpHandles", LPHANDLE), ("bWaitAll", BOOL),
        ("dwMilliseconds", DWORD),
    ), Check.WAIT_FAILED),
    # Clocks: the driver stamps records with the interrupt time (KeQueryInterruptTime).
    Binding("QueryInterruptTime", REALTIME, None, (
        ("lpInterruptTime", PULONGLONG),
    ), Check.NEVER),
    Binding("QueryInterruptTimePrecise", REALTIME, None, (
        ("lpInterruptTimePrecise", PULONGLONG),
    ), Check.NEVER),
    Binding("GetSystemTimePreciseAsFileTime", K32, None, (
        ("lpSystemTimeAsFileTime", LPFILETIME),
    ), Check.NEVER),
    Binding("GetSystemDirectoryW", K32, UINT, (
        ("lpBuffer", _P), ("uSize", UINT),
    ), Check.ZERO),
    # advapi32: the Service Control Manager.
    Binding("OpenSCManagerW", ADV, SC_HANDLE, (
        ("lpMachineName", LPCWSTR), ("lpDatabaseName", LPCWSTR), ("dwDesiredAccess", DWORD),
    ), Check.ZERO),
    Binding("CreateServiceW", ADV, SC_HANDLE, (
        ("hSCManager", SC_HANDLE), ("lpServiceName", LPCWSTR), ("lpDisplayName", LPCWSTR),
        ("dwDesiredAccess", DWORD), ("dwServiceType", DWORD), ("dwStartType", DWORD),
        ("dwErrorControl", DWORD), ("lpBinaryPathName", LPCWSTR),
        ("lpLoadOrderGroup", LPCWSTR), ("lpdwTagId", LPDWORD), ("lpDependencies", LPCWSTR),
        ("lpServiceStartName", LPCWSTR), ("lpPassword", LPCWSTR),
    ), Check.ZERO),
    Binding("OpenServiceW", ADV, SC_HANDLE, (
        ("hSCManager", SC_HANDLE), ("lpServiceName", LPCWSTR), ("dwDesiredAccess", DWORD),
    ), Check.ZERO),
    Binding("StartServiceW", ADV, BOOL, (
        ("hService", SC_HANDLE), ("dwNumServiceArgs", DWORD), ("lpServiceArgVectors", _P),
    ), Check.ZERO),
    Binding("ControlService", ADV, BOOL, (
        ("hService", SC_HANDLE), ("dwControl", DWORD), ("lpServiceStatus", LPSERVICE_STATUS),
    ), Check.ZERO),
    Binding("QueryServiceStatus", ADV, BOOL, (
        ("hService", SC_HANDLE), ("lpServiceStatus", LPSERVICE_STATUS),
    ), Check.ZERO),
    Binding("QueryServiceConfigW", ADV, BOOL, (
        ("hService", SC_HANDLE), ("lpServiceConfig", _P), ("cbBufSize", DWORD),
        ("pcbBytesNeeded", LPDWORD),
    ), Check.ZERO),
    Binding("DeleteService", ADV, BOOL, (("hService", SC_HANDLE),), Check.ZERO),
    Binding("CloseServiceHandle", ADV, BOOL, (("hSCObject", SC_HANDLE),), Check.ZERO),
)
# fmt: on


def make_errcheck(
    binding: Binding, get_last_error: Callable[[], int]
) -> Callable[[Any, Any, tuple[Any, ...]], Any]:
    """The ctypes ``errcheck`` for ``binding``: raises :class:`WinApiError` on failure."""

    def errcheck(result: Any, func: Any, args: tuple[Any, ...]) -> Any:
        if binding.failed(result):
            raise WinApiError(get_last_error(), binding.name)
        return result

    return errcheck


class WinApi:
    """The bound functions, as attributes (each one raises :class:`WinApiError` on failure)."""

    CreateFileW: Callable[..., Any]
    DeviceIoControl: Callable[..., Any]
    CloseHandle: Callable[..., Any]
    CreateEventW: Callable[..., Any]
    OpenEventW: Callable[..., Any]
    SetEvent: Callable[..., Any]
    ResetEvent: Callable[..., Any]
    CreateMutexW: Callable[..., Any]
    ReleaseMutex: Callable[..., Any]
    WaitForSingleObject: Callable[..., Any]
    WaitForMultipleObjects: Callable[..., Any]
    QueryInterruptTime: Callable[..., Any]
    QueryInterruptTimePrecise: Callable[..., Any]
    GetSystemTimePreciseAsFileTime: Callable[..., Any]
    GetSystemDirectoryW: Callable[..., Any]
    OpenSCManagerW: Callable[..., Any]
    CreateServiceW: Callable[..., Any]
    OpenServiceW: Callable[..., Any]
    StartServiceW: Callable[..., Any]
    ControlService: Callable[..., Any]
    QueryServiceStatus: Callable[..., Any]
    QueryServiceConfigW: Callable[..., Any]
    DeleteService: Callable[..., Any]
    CloseServiceHandle: Callable[..., Any]

    def __init__(
        self,
        load_dll: Callable[[str], Any],
        get_last_error: Callable[[], int],
        bindings: Sequence[Binding] = BINDINGS,
    ) -> None:
        """Apply ``bindings`` to the function objects of the DLLs ``load_dll`` returns.

        On Windows ``load_dll`` is ``WinDLL(name, use_last_error=True)``; tests pass fakes
        whose functions honour ``errcheck`` the way ctypes does.
        """
        dlls: dict[str, Any] = {}
        for binding in bindings:
            if binding.dll not in dlls:
                dlls[binding.dll] = load_dll(binding.dll)
            function = getattr(dlls[binding.dll], binding.name)
            function.restype = binding.restype
            function.argtypes = binding.argtypes
            function.errcheck = make_errcheck(binding, get_last_error)
            setattr(self, binding.name, function)
        self.get_last_error = get_last_error


_api: WinApi | None = None
_api_lock = threading.Lock()


def api() -> WinApi:
    """The bound kernel32/advapi32 functions (loaded once); Windows only."""
    global _api
    with _api_lock:
        if _api is None:
            _api = _load()
        return _api


def set_api(replacement: WinApi | None) -> WinApi | None:
    """Install ``replacement`` as what :func:`api` returns (tests); returns the previous one."""
    global _api
    with _api_lock:
        previous, _api = _api, replacement
        return previous


def _load() -> WinApi:
    if sys.platform != "win32":
        raise MonitorError(
            f"the Windows API (kernel32/advapi32) is only available on Windows; "
            f"this system is {sys.platform!r}"
        )
    log.debug("binding %d functions from kernel32/advapi32/%s", len(BINDINGS), REALTIME)
    return WinApi(
        lambda name: ctypes.WinDLL(name, use_last_error=True),
        ctypes.get_last_error,
    )
