"""The binding table applied to DLL objects, errcheck, and the WinError equivalent."""

from __future__ import annotations

import ctypes
import errno
import subprocess
import sys

import pytest

from procobsrv.errors import MonitorError
from procobsrv.windows import winapi
from procobsrv.windows.winapi import BINDINGS, Binding, Check, WinApi, WinApiError
from tests.fakes.windows import FakeWindows


def test_types_are_fixed_width() -> None:
    assert ctypes.sizeof(winapi.DWORD) == 4
    assert ctypes.sizeof(winapi.BOOL) == 4
    assert ctypes.sizeof(winapi.HANDLE) == 8
    assert ctypes.sizeof(winapi.SERVICE_STATUS) == 28
    assert ctypes.sizeof(winapi.QUERY_SERVICE_CONFIGW) == 64
    assert ctypes.sizeof(winapi.FILETIME) == 8
    for binding in BINDINGS:
        for t in (binding.restype, *binding.argtypes):
            if t is None:  # VOID
                continue
            assert t.__module__ != "ctypes.wintypes", f"{binding.name} uses ctypes.wintypes"


def test_table_is_applied_to_each_function(fake: FakeWindows) -> None:
    api = fake.api()
    for binding in BINDINGS:
        function = getattr(api, binding.name)
        assert function.restype is binding.restype
        assert function.argtypes == binding.argtypes
        assert callable(function.errcheck)
        assert function is getattr(fake.dlls[binding.dll], binding.name)


def test_each_dll_is_loaded_once(fake: FakeWindows) -> None:
    loaded: list[str] = []

    def load(name: str) -> object:
        loaded.append(name)
        return fake.dlls[name]

    WinApi(load, fake.get_last_error)
    assert sorted(loaded) == ["advapi32", "api-ms-win-core-realtime-l1-1-1", "kernel32"]


@pytest.mark.parametrize(
    ("check", "failures", "successes"),
    [
        (Check.ZERO, [0, None, False], [1, 0x1234, True]),
        (Check.INVALID_HANDLE, [None, 0, -1, winapi.INVALID_HANDLE_VALUE], [0x44, 1]),
        (Check.WAIT_FAILED, [0xFFFFFFFF], [0, 1, 0x80, 0x102]),
    ],
)
def test_error_rules(check: Check, failures: list[object], successes: list[object]) -> None:
    binding = Binding("F", "kernel32", winapi.DWORD, (), check)
    errcheck = winapi.make_errcheck(binding, lambda: 5)
    for result in successes:
        assert errcheck(result, None, ()) == result
    for result in failures:
        with pytest.raises(WinApiError) as info:
            errcheck(result, None, ())
        assert (info.value.winerror, info.value.function) == (5, "F")


def test_failure_becomes_oserror_with_code_and_name(fake: FakeWindows) -> None:
    api = fake.api()
    with pytest.raises(OSError) as info:
        api.CloseHandle(0x999)
    error = info.value
    assert isinstance(error, WinApiError)
    assert error.winerror == winapi.ERROR_INVALID_HANDLE
    assert error.function == "CloseHandle"
    assert error.errno == errno.EBADF
    assert str(error) == "CloseHandle failed: [WinError 6] The handle is invalid"


def test_unknown_code_still_reads_well() -> None:
    error = WinApiError(4242, "DeviceIoControl")
    assert str(error) == "DeviceIoControl failed: [WinError 4242] Windows error"
    assert error.errno is None


def test_last_error_is_read_per_call(fake: FakeWindows) -> None:
    api = fake.api()
    event = api.CreateEventW(None, True, False, None)
    assert api.SetEvent(event) == 1
    with pytest.raises(WinApiError, match=r"\[WinError 6\]"):
        api.SetEvent(event + 1000)


@pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows behaviour")
def test_api_is_not_callable_off_windows() -> None:
    previous = winapi.set_api(None)
    try:
        with pytest.raises(MonitorError, match="only available on Windows"):
            winapi.api()
    finally:
        winapi.set_api(previous)


def test_import_procobsrv_does_not_touch_windows_modules() -> None:
    code = (
        "import sys, procobsrv, procobsrv.platform, procobsrv.cli.main\n"
        "bad = [m for m in sys.modules if m.startswith('procobsrv.windows')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_windows_modules_import_cleanly_here() -> None:
    code = (
        "import procobsrv.windows, procobsrv.windows.winapi, procobsrv.windows.contract, "
        "procobsrv.windows.installer, procobsrv.windows.device, procobsrv.windows.sync, "
        "procobsrv.windows.source, procobsrv.cli.driver\n"
        "assert procobsrv.windows.PLATFORM.name == 'windows'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
