"""A small simulated Windows for the ctypes layer: kernel32/advapi32 functions as fakes.

Each DLL function is a ``Mock`` (pytest-mock) whose side effect is a model of the real
function: handles, events, mutexes and waits, the Service Control Manager and the ProcObsrv
device as ``driver/ProcObsrv.h`` specifies it. The fake function objects honour
``restype``/``argtypes``/``errcheck`` assignment the way ctypes function pointers do, so
:class:`procobsrv.windows.winapi.WinApi` is exercised unchanged, errcheck included.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from procobsrv.windows import contract, winapi
from procobsrv.windows.device import FILETIME_UNIX_EPOCH
from procobsrv.windows.winapi import WinApi

ERROR_NOT_OWNER = 288
INVALID = winapi.INVALID_HANDLE_VALUE


def interrupt_time_now(offset: int = 0) -> int:
    """The simulated interrupt time (100 ns units): CLOCK_MONOTONIC shifted by ``offset``."""
    return time.monotonic_ns() // 100 + offset


def address_of(arg: Any) -> int:
    """The address a pointer argument stands for (byref(), an array, an int or None)."""
    if arg is None:
        return 0
    if isinstance(arg, int):
        return arg
    obj = getattr(arg, "_obj", None)  # ctypes.byref() result
    if obj is not None:
        return ctypes.addressof(obj)
    return ctypes.addressof(arg)


def store(arg: Any, value: int) -> None:
    """``*arg = value`` for a byref(DWORD) argument."""
    arg._obj.value = value


class FakeFunction:
    """Stands in for a ctypes function pointer: calls its mock, then ``errcheck``."""

    def __init__(self, name: str, impl: mock.Mock, calls: list[tuple[str, tuple[Any, ...]]]):
        self.__name__ = name
        self.mock = impl
        self.calls = calls
        self.restype: Any = None
        self.argtypes: Any = None
        self.errcheck: Any = None

    def __call__(self, *args: Any) -> Any:
        if self.argtypes is not None:
            assert len(args) == len(self.argtypes), f"{self.__name__}: wrong number of arguments"
        self.calls.append((self.__name__, args))
        result = self.mock(*args)
        if self.errcheck is not None:
            return self.errcheck(result, self, args)
        return result


class FakeDll:
    def __init__(self, functions: dict[str, FakeFunction]):
        self._functions = functions

    def __getattr__(self, name: str) -> FakeFunction:
        try:
            return self._functions[name]
        except KeyError:
            raise AttributeError(f"function '{name}' not found") from None


@dataclass
class Service:
    path: str
    state: int = winapi.SERVICE_STOPPED
    deleted: bool = False


@dataclass
class KEvent:
    manual: bool
    signalled: bool = False


@dataclass
class KMutex:
    owner: int | None = None
    count: int = 0


@dataclass
class Driver:
    """ProcObsrv.sys as ProcObsrv.h describes it."""

    event: KEvent = field(default_factory=lambda: KEvent(manual=True))
    queue: deque[bytes] = field(default_factory=deque)
    sequence: int = 0
    delivered: int = 0
    dropped: int = 0
    active: bool = False
    abi_version: int = contract.ABI_VERSION
    capacity: int = contract.QUEUE_CAPACITY_BYTES
    open_handle: int | None = None
    #: What KeQueryInterruptTime reads (100 ns units); stamps records that give no timestamp.
    clock: Callable[[], int] = interrupt_time_now

    def notify(
        self,
        kind: int,
        pid: int,
        *fields: Any,
        drop: bool = False,
        timestamp: int | None = None,
        **named: Any,
    ) -> int:
        """One notification; ``drop`` models a full queue. Returns its sequence number.

        ``fields`` and ``named`` are the record's other fields, as :func:`make_record` takes
        them (parent_pid, image, command_line; exit_status, flags); the sequence number is
        the driver's next, the timestamp (unless given) its clock's.
        """
        if timestamp is None:
            timestamp = self.clock()
        self.sequence += 1
        if drop:
            self.dropped += 1
            return self.sequence
        self.queue.append(
            make_record(kind, self.sequence, pid, *fields, timestamp=timestamp, **named)
        )
        self.event.signalled = True
        return self.sequence

    def stats(self) -> contract.Stats:
        queued = sum(len(r) for r in self.queue)
        return contract.Stats(
            size=ctypes.sizeof(contract.Stats),
            abi_version=self.abi_version,
            state=(contract.STATE_ACTIVE | contract.STATE_NOTIFY_EX) if self.active else 0,
            queued_records=len(self.queue),
            queued_bytes=queued,
            capacity_bytes=self.capacity,
            peak_queued_bytes=queued,
            max_record_size=contract.MAX_RECORD_SIZE,
            notified=self.sequence,
            delivered=self.delivered,
            dropped=self.dropped,
        )


def make_record(
    kind: int,
    sequence: int,
    pid: int,
    parent_pid: int = 4,
    image: str = "",
    command_line: str = "",
    *,
    exit_status: int = 0,
    flags: int = 0,
    timestamp: int = 36_000_000_000,  # one hour of interrupt time
) -> bytes:
    """The bytes of one PROCOBSRV_RECORD, padded to its size, built with contract.Record."""
    image_b = image.encode("utf-16-le")
    cmd_b = command_line.encode("utf-16-le")
    image_chars = len(image_b) // contract.WCHAR_BYTES
    cmd_chars = len(cmd_b) // contract.WCHAR_BYTES
    size = contract.record_size(image_chars, cmd_chars)
    header = contract.Record(
        size=size,
        kind=kind,
        sequence=sequence,
        timestamp=timestamp,
        pid=pid,
        parent_pid=parent_pid,
        exit_status=exit_status,
        flags=flags,
        image_length=image_chars,
        command_line_length=cmd_chars,
        reserved=0,
    )
    body = bytes(header) + image_b + cmd_b
    return body + b"\0" * (size - len(body))


class FakeWindows:
    """kernel32 + advapi32 over an in-memory model of the objects they manage.

    Its DLLs export what :data:`winapi.BINDINGS <procobsrv.windows.winapi.BINDINGS>` binds,
    each function modelled by the method of the same name with a leading ``_``.
    """

    def __init__(self, mocker: Any) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.mocks: dict[str, mock.Mock] = {}
        self._local = threading.local()
        self._cond = threading.Condition()
        self._next = 0x100
        self.objects: dict[int, tuple[str, Any]] = {}
        self.services: dict[str, Service] = {}
        self.driver: Driver | None = None  # present while the service runs
        self.admin = True
        self.test_signing = True
        self.files: set[str] = set()  # driver files that exist
        self._failures: dict[str, deque[int]] = {}
        self.stop_pending_polls = 0  # QueryServiceStatus calls that still say STOP_PENDING
        #: Interrupt time minus CLOCK_MONOTONIC (100 ns units): tests shift "boot" with it.
        self.interrupt_offset = 0
        #: Wall clock minus the real one (100 ns units): someone set the clock.
        self.wall_skew = 0
        #: What GetSystemDirectoryW answers (tests point it at a temporary directory).
        self.system_directory = "C:\\Windows\\system32"
        dlls: dict[str, dict[str, FakeFunction]] = {}
        for binding in winapi.BINDINGS:
            name = binding.name
            impl = mocker.Mock(name=name, side_effect=getattr(self, "_" + name))
            self.mocks[name] = impl
            dlls.setdefault(binding.dll, {})[name] = FakeFunction(name, impl, self.calls)
        self.dlls = {k: FakeDll(v) for k, v in dlls.items()}

    # --- plumbing ------------------------------------------------------------------------
    def api(self) -> WinApi:
        return WinApi(self.dlls.__getitem__, self.get_last_error)

    def get_last_error(self) -> int:
        return int(getattr(self._local, "error", 0))

    def _fail(self, code: int, result: Any = 0) -> Any:
        self._local.error = code
        return result

    def fail(self, name: str, code: int, times: int = 1) -> None:
        """Make the next ``times`` calls of ``name`` fail with ``code``."""
        self._failures.setdefault(name, deque()).extend([code] * times)

    def _injected(self, name: str) -> int | None:
        pending = self._failures.get(name)
        return pending.popleft() if pending else None

    def _new(self, kind: str, obj: Any) -> int:
        self._next += 4
        self.objects[self._next] = (kind, obj)
        return self._next

    def _get(self, handle: Any, kind: str) -> Any:
        entry = self.objects.get(handle or 0)
        if entry is None or entry[0] != kind:
            return None
        return entry[1]

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def open_handles(self) -> list[str]:
        return sorted(kind for kind, _ in self.objects.values())

    def start_driver_directly(self) -> Driver:
        """The driver loaded by someone else (service registered and running)."""
        self.files.add("C:\\drv\\ProcObsrv.sys")
        self.services["ProcObsrv"] = Service("C:\\drv\\ProcObsrv.sys", winapi.SERVICE_RUNNING)
        self.driver = Driver(clock=self.interrupt_time)
        return self.driver

    # --- clocks --------------------------------------------------------------------------
    def interrupt_time(self) -> int:
        return interrupt_time_now(self.interrupt_offset)

    def _QueryInterruptTime(self, out):
        out._obj.value = self.interrupt_time()

    _QueryInterruptTimePrecise = _QueryInterruptTime

    def _GetSystemTimePreciseAsFileTime(self, out):
        now = time.time_ns() // 100 + FILETIME_UNIX_EPOCH + self.wall_skew
        out._obj.dwLowDateTime, out._obj.dwHighDateTime = now & 0xFFFFFFFF, now >> 32

    def _GetSystemDirectoryW(self, buffer, size):
        text = self.system_directory.encode("utf-16-le")
        if size < len(text) // 2 + 1:
            return len(text) // 2 + 1  # too small: the size needed, NUL included
        ctypes.memmove(address_of(buffer), text + b"\0\0", len(text) + 2)
        return len(text) // 2

    # --- kernel32 ------------------------------------------------------------------------
    def _CreateFileW(self, path, access, share, sa, disposition, flags, template):
        if (code := self._injected("CreateFileW")) is not None:
            return self._fail(code, INVALID)
        if path != contract.USER_DEVICE_PATH or self.driver is None:
            return self._fail(winapi.ERROR_FILE_NOT_FOUND, INVALID)
        if not self.admin:
            return self._fail(winapi.ERROR_ACCESS_DENIED, INVALID)
        if self.driver.open_handle is not None:
            return self._fail(winapi.ERROR_SHARING_VIOLATION, INVALID)
        handle = self._new("device", self.driver)
        self.driver.open_handle = handle
        return handle

    def _DeviceIoControl(self, handle, code, inbuf, inlen, outbuf, outlen, returned, ovl):
        if (error := self._injected("DeviceIoControl")) is not None:
            return self._fail(error)
        driver: Driver | None = self._get(handle, "device")
        if driver is None:
            return self._fail(winapi.ERROR_INVALID_HANDLE)
        store(returned, 0)
        if code == contract.IOCTL_GET_STATS:
            if inlen:
                return self._fail(winapi.ERROR_BAD_LENGTH)
            stats = driver.stats()
            if outlen < ctypes.sizeof(stats):
                return self._fail(winapi.ERROR_INSUFFICIENT_BUFFER)
            ctypes.memmove(address_of(outbuf), ctypes.addressof(stats), ctypes.sizeof(stats))
            store(returned, ctypes.sizeof(stats))
            return 1
        if code == contract.IOCTL_GET_EVENTS:
            if inlen:
                return self._fail(winapi.ERROR_BAD_LENGTH)
            if outlen < contract.MIN_EVENTS_BUFFER:
                return self._fail(winapi.ERROR_INSUFFICIENT_BUFFER)
            out = bytearray()
            with self._cond:
                while driver.queue and len(out) + len(driver.queue[0]) <= outlen:
                    out += driver.queue.popleft()
                    driver.delivered += 1
                if not driver.queue:
                    driver.event.signalled = False
            ctypes.memmove(address_of(outbuf), bytes(out), len(out))
            store(returned, len(out))
            return 1
        if code == contract.IOCTL_ACTIVATE:
            request = contract.ActivateInput.from_address(address_of(inbuf))
            if inlen != ctypes.sizeof(contract.ActivateInput):
                return self._fail(winapi.ERROR_BAD_LENGTH)
            if (
                request.size != inlen
                or request.reserved
                or request.flags & ~contract.ACTIVATE_VALID_FLAGS
            ):
                return self._fail(winapi.ERROR_INVALID_PARAMETER)
            if request.abi_version != driver.abi_version:
                return self._fail(winapi.ERROR_REVISION_MISMATCH)
            if driver.active:
                return self._fail(winapi.ERROR_BAD_COMMAND)
            driver.active = True
            return 1
        if code == contract.IOCTL_DEACTIVATE:
            if inlen:
                return self._fail(winapi.ERROR_BAD_LENGTH)
            if not driver.active:
                return self._fail(winapi.ERROR_BAD_COMMAND)
            driver.active = False
            return 1
        return self._fail(winapi.ERROR_INVALID_FUNCTION)

    def _CloseHandle(self, handle):
        if (code := self._injected("CloseHandle")) is not None:
            return self._fail(code)
        with self._cond:
            entry = self.objects.get(handle or 0)
            if entry is None or entry[0] in ("scm", "service"):
                return self._fail(winapi.ERROR_INVALID_HANDLE)
            del self.objects[handle]
            if entry[0] == "device":
                entry[1].open_handle = None
            return 1

    def _CreateEventW(self, sa, manual, initial, name):
        assert name is None
        return self._new("event", KEvent(bool(manual), bool(initial)))

    def _OpenEventW(self, access, inherit, name):
        if (code := self._injected("OpenEventW")) is not None:
            return self._fail(code, None)
        if name != contract.USER_EVENT_NAME or self.driver is None:
            return self._fail(winapi.ERROR_FILE_NOT_FOUND, None)
        return self._new("event", self.driver.event)

    def _signal(self, handle: int, signalled: bool) -> int:
        """SetEvent / ResetEvent: the event's new state; waiters look again."""
        with self._cond:
            event: KEvent | None = self._get(handle, "event")
            if event is None:
                return self._fail(winapi.ERROR_INVALID_HANDLE)
            event.signalled = signalled
            self._cond.notify_all()
            return 1

    def _SetEvent(self, handle):
        return self._signal(handle, True)

    def _ResetEvent(self, handle):
        return self._signal(handle, False)

    def signal_driver_event(self) -> None:
        """What the driver's KeSetEvent does, seen from user mode."""
        with self._cond:
            assert self.driver is not None
            self.driver.event.signalled = bool(self.driver.queue)
            self._cond.notify_all()

    def _CreateMutexW(self, sa, initial_owner, name):
        assert name is None and not initial_owner
        return self._new("mutex", KMutex())

    def _ReleaseMutex(self, handle):
        with self._cond:
            mutex: KMutex | None = self._get(handle, "mutex")
            if mutex is None:
                return self._fail(winapi.ERROR_INVALID_HANDLE)
            if mutex.owner != threading.get_ident():
                return self._fail(ERROR_NOT_OWNER)
            mutex.count -= 1
            if not mutex.count:
                mutex.owner = None
                self._cond.notify_all()
            return 1

    def _ready(self, handle: int) -> bool | None:
        entry = self.objects.get(handle)
        if entry is None or entry[0] not in ("event", "mutex"):
            return None
        obj = entry[1]
        if entry[0] == "event":
            return bool(obj.signalled)
        return obj.owner in (None, threading.get_ident())

    def _acquire(self, handle: int) -> None:
        kind, obj = self.objects[handle]
        if kind == "mutex":
            obj.owner = threading.get_ident()
            obj.count += 1
        elif not obj.manual:
            obj.signalled = False

    def _wait(self, handles: list[int], milliseconds: int) -> int:
        deadline = (
            None if milliseconds == winapi.INFINITE else time.monotonic() + milliseconds / 1e3
        )
        with self._cond:
            while True:
                for index, handle in enumerate(handles):
                    ready = self._ready(handle)
                    if ready is None:
                        return self._fail(winapi.ERROR_INVALID_HANDLE, winapi.WAIT_FAILED)
                    if ready:
                        self._acquire(handle)
                        return winapi.WAIT_OBJECT_0 + index
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return winapi.WAIT_TIMEOUT
                self._cond.wait(remaining)

    def _WaitForSingleObject(self, handle, milliseconds):
        return self._wait([handle], milliseconds)

    def _WaitForMultipleObjects(self, count, handles, wait_all, milliseconds):
        assert not wait_all
        return self._wait([handles[i] or 0 for i in range(count)], milliseconds)

    # --- advapi32 ------------------------------------------------------------------------
    def _OpenSCManagerW(self, machine, database, access):
        if (code := self._injected("OpenSCManagerW")) is not None:
            return self._fail(code, None)
        if not self.admin and access & winapi.SC_MANAGER_CREATE_SERVICE:
            return self._fail(winapi.ERROR_ACCESS_DENIED, None)
        return self._new("scm", None)

    def _CreateServiceW(self, scm, name, display, access, kind, start, error, path, *rest):
        if (code := self._injected("CreateServiceW")) is not None:
            return self._fail(code, None)
        assert self._get(scm, "scm") is None and self.objects[scm][0] == "scm"
        assert (kind, start, error) == (
            winapi.SERVICE_KERNEL_DRIVER,
            winapi.SERVICE_DEMAND_START,
            winapi.SERVICE_ERROR_NORMAL,
        )
        if name in self.services:
            return self._fail(winapi.ERROR_SERVICE_EXISTS, None)
        self.services[name] = Service(path)
        return self._new("service", name)

    def _OpenServiceW(self, scm, name, access):
        if (code := self._injected("OpenServiceW")) is not None:
            return self._fail(code, None)
        if name not in self.services:
            return self._fail(winapi.ERROR_SERVICE_DOES_NOT_EXIST, None)
        if not self.admin and access & (winapi.SERVICE_START | winapi.SERVICE_STOP | winapi.DELETE):
            return self._fail(winapi.ERROR_ACCESS_DENIED, None)
        return self._new("service", name)

    def _service(self, handle: int) -> Service | None:
        name = self._get(handle, "service")
        return None if name is None else self.services.get(name)

    def _StartServiceW(self, handle, argc, argv):
        if (code := self._injected("StartServiceW")) is not None:
            return self._fail(code)
        service = self._service(handle)
        if service is None:
            return self._fail(winapi.ERROR_INVALID_HANDLE)
        if service.state == winapi.SERVICE_RUNNING:
            return self._fail(winapi.ERROR_SERVICE_ALREADY_RUNNING)
        if service.path not in self.files and not os.path.isfile(service.path):
            return self._fail(winapi.ERROR_FILE_NOT_FOUND)
        if not self.test_signing:
            return self._fail(winapi.ERROR_INVALID_IMAGE_HASH)
        service.state = winapi.SERVICE_RUNNING
        self.driver = Driver(clock=self.interrupt_time)
        return 1

    def _ControlService(self, handle, control, status):
        if (code := self._injected("ControlService")) is not None:
            return self._fail(code)
        service = self._service(handle)
        if service is None:
            return self._fail(winapi.ERROR_INVALID_HANDLE)
        assert control == winapi.SERVICE_CONTROL_STOP
        if service.state != winapi.SERVICE_RUNNING:
            return self._fail(winapi.ERROR_SERVICE_NOT_ACTIVE)
        if self.stop_pending_polls:
            service.state = winapi.SERVICE_STOP_PENDING
        else:
            service.state = winapi.SERVICE_STOPPED
            self.driver = None
        status._obj.dwCurrentState = service.state
        return 1

    def _QueryServiceStatus(self, handle, status):
        service = self._service(handle)
        if service is None:
            return self._fail(winapi.ERROR_INVALID_HANDLE)
        if service.state == winapi.SERVICE_STOP_PENDING:
            if self.stop_pending_polls > 0:
                self.stop_pending_polls -= 1
            else:
                service.state = winapi.SERVICE_STOPPED
                self.driver = None
        status._obj.dwServiceType = winapi.SERVICE_KERNEL_DRIVER
        status._obj.dwCurrentState = service.state
        return 1

    def _QueryServiceConfigW(self, handle, buffer, size, needed):
        if (code := self._injected("QueryServiceConfigW")) is not None:
            return self._fail(code)
        service = self._service(handle)
        if service is None:
            return self._fail(winapi.ERROR_INVALID_HANDLE)
        header = ctypes.sizeof(winapi.QUERY_SERVICE_CONFIGW)
        text = (service.path + "\0").encode("utf-16-le")
        store(needed, header + len(text))
        if size < header + len(text):
            return self._fail(winapi.ERROR_INSUFFICIENT_BUFFER)
        base = address_of(buffer)
        config = winapi.QUERY_SERVICE_CONFIGW.from_address(base)
        config.dwServiceType = winapi.SERVICE_KERNEL_DRIVER
        config.dwStartType = winapi.SERVICE_DEMAND_START
        config.lpBinaryPathName = base + header
        ctypes.memmove(base + header, text, len(text))
        return 1

    def _DeleteService(self, handle):
        if (code := self._injected("DeleteService")) is not None:
            return self._fail(code)
        name = self._get(handle, "service")
        if name is None or name not in self.services:
            return self._fail(winapi.ERROR_INVALID_HANDLE)
        del self.services[name]
        return 1

    def _CloseServiceHandle(self, handle):
        entry = self.objects.get(handle or 0)
        if entry is None or entry[0] not in ("scm", "service"):
            return self._fail(winapi.ERROR_INVALID_HANDLE)
        del self.objects[handle]
        return 1
