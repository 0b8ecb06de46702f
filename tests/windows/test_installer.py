"""The SCM installer over the simulated advapi32: exact call sequences, cleanup, messages."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from procobsrv.errors import MonitorError
from procobsrv.windows import installer, winapi
from procobsrv.windows.installer import (
    DriverError,
    DriverService,
    LoadedDriver,
    ServiceState,
    utf16z_in,
)
from tests.fakes.windows import FakeWindows, Service

OPEN_SCM, CLOSE = "OpenSCManagerW", "CloseServiceHandle"


@pytest.fixture
def sys_file(tmp_path: Path, fake: FakeWindows) -> str:
    path = tmp_path / "ProcObsrv.sys"
    path.write_bytes(b"MZ")
    fake.files.add(str(path))
    return str(path)


@pytest.fixture
def service(fake: FakeWindows, sys_file: str) -> DriverService:
    return DriverService(sys_file, api=fake.api(), sleep=lambda s: None)


def closed_everything(fake: FakeWindows) -> bool:
    return fake.open_handles() == []


# --- install -----------------------------------------------------------------------------------
def test_install_creates_a_demand_start_kernel_driver(
    fake: FakeWindows, service: DriverService
) -> None:
    assert service.install() is True
    assert fake.names() == [
        OPEN_SCM,
        "OpenServiceW",
        "GetSystemDirectoryW",
        "CreateServiceW",
        CLOSE,
        CLOSE,
    ]
    scm_access = fake.calls[0][1][2]
    assert scm_access == winapi.SC_MANAGER_CONNECT | winapi.SC_MANAGER_CREATE_SERVICE
    args = fake.calls[3][1]
    assert args[1:8] == (
        "ProcObsrv",
        "ProcObsrv",
        winapi.SERVICE_ALL_ACCESS,
        winapi.SERVICE_KERNEL_DRIVER,
        winapi.SERVICE_DEMAND_START,
        winapi.SERVICE_ERROR_NORMAL,
        service.path,
    )
    # The service handle is closed before the manager's.
    assert [c[1][0] for c in fake.calls[4:]] == [args[0] + 4, args[0]]
    assert fake.services["ProcObsrv"].path == service.path
    assert closed_everything(fake)


def test_install_reuses_an_identical_registration(
    fake: FakeWindows, service: DriverService
) -> None:
    service.install()
    fake.calls.clear()
    assert service.install() is False
    assert fake.names() == [
        OPEN_SCM,
        "OpenServiceW",
        "QueryServiceConfigW",
        "QueryServiceConfigW",
        CLOSE,
        CLOSE,
    ]
    assert fake.calls[1][1][2] == winapi.SERVICE_QUERY_CONFIG
    assert closed_everything(fake)


def test_install_refuses_a_service_pointing_elsewhere(
    fake: FakeWindows, service: DriverService
) -> None:
    fake.services["ProcObsrv"] = Service("C:\\other\\x.sys")
    with pytest.raises(DriverError, match=r"points to C:\\other\\x.sys.*driver remove") as info:
        service.install()
    assert info.value.winerror == winapi.ERROR_SERVICE_EXISTS
    assert fake.services["ProcObsrv"].path == "C:\\other\\x.sys"
    assert closed_everything(fake)


def test_install_with_a_missing_file_makes_no_call(fake: FakeWindows, tmp_path: Path) -> None:
    service = DriverService(tmp_path / "nope.sys", api=fake.api())
    with pytest.raises(DriverError, match=r"nope.sys is missing: build it with 'make -C driver'"):
        service.install()
    assert fake.calls == []


def test_install_as_non_administrator(fake: FakeWindows, service: DriverService) -> None:
    fake.admin = False
    with pytest.raises(DriverError, match=r"access denied.*Run as administrator") as info:
        service.install()
    assert info.value.winerror == winapi.ERROR_ACCESS_DENIED
    assert isinstance(info.value.__cause__, winapi.WinApiError)
    assert fake.names() == [OPEN_SCM]
    assert closed_everything(fake)


def test_install_failure_closes_the_manager(fake: FakeWindows, service: DriverService) -> None:
    fake.fail("CreateServiceW", winapi.ERROR_SERVICE_MARKED_FOR_DELETE)
    with pytest.raises(DriverError, match="marked for deletion"):
        service.install()
    assert fake.names() == [
        OPEN_SCM,
        "OpenServiceW",
        "GetSystemDirectoryW",
        "CreateServiceW",
        CLOSE,
    ]
    assert closed_everything(fake)


def test_a_failed_registration_leaves_no_copy_behind(
    fake: FakeWindows, service: DriverService
) -> None:
    # The copy was made, CreateServiceW failed, and the file stayed in the drivers directory
    # although nothing registered it: install() changed the system and reported failure.
    fake.fail("CreateServiceW", winapi.ERROR_SERVICE_MARKED_FOR_DELETE)
    with pytest.raises(DriverError, match="marked for deletion"):
        service.install()
    assert not Path(service.path).exists()
    assert list((Path(fake.system_directory) / "drivers").iterdir()) == []
    assert closed_everything(fake)


def test_default_path_is_the_bundled_driver(fake: FakeWindows) -> None:
    expected = Path(installer.__file__).resolve().parent / "bin" / "ProcObsrv.sys"
    assert installer.bundled_driver() == expected
    assert DriverService(api=fake.api()).source == str(expected)


# --- start / stop / remove -------------------------------------------------------------------
def test_start_sequence(fake: FakeWindows, service: DriverService) -> None:
    service.install()
    fake.calls.clear()
    assert service.start() is True
    assert fake.names() == [OPEN_SCM, "OpenServiceW", "StartServiceW", CLOSE, CLOSE]
    assert fake.calls[0][1][2] == winapi.SC_MANAGER_CONNECT
    assert fake.calls[1][1][1:] == ("ProcObsrv", winapi.SERVICE_START)
    assert fake.driver is not None
    assert closed_everything(fake)


def test_start_when_already_running_is_fine(fake: FakeWindows, service: DriverService) -> None:
    service.install()
    service.start()
    fake.calls.clear()
    assert service.start() is False
    assert fake.names() == [OPEN_SCM, "OpenServiceW", "StartServiceW", CLOSE, CLOSE]
    assert closed_everything(fake)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (winapi.ERROR_INVALID_IMAGE_HASH, r"not accepted.*bcdedit /set testsigning on"),
        (winapi.ERROR_FILE_NOT_FOUND, r"is missing. Build it with 'make -C driver'"),
        (winapi.ERROR_ACCESS_DENIED, r"elevated prompt"),
        (winapi.ERROR_DRIVER_BLOCKED, r"blocked"),
        (winapi.ERROR_BAD_EXE_FORMAT, r"x64 build"),
        (winapi.ERROR_SERVICE_DISABLED, r"sc config ProcObsrv start= demand"),
        (winapi.ERROR_GEN_FAILURE, r"cannot start the ProcObsrv driver: StartServiceW failed: "
                                   r"\[WinError 31\]"),
    ],
)  # fmt: skip
def test_start_failures_explain_themselves(
    fake: FakeWindows, service: DriverService, code: int, message: str
) -> None:
    service.install()
    fake.fail("StartServiceW", code)
    with pytest.raises(DriverError, match=message) as info:
        service.start()
    assert info.value.winerror == code
    assert closed_everything(fake)


def test_test_signing_off_is_reported(fake: FakeWindows, service: DriverService) -> None:
    fake.test_signing = False
    service.install()
    with pytest.raises(DriverError, match="testsigning"):
        service.start()


def test_start_when_not_installed(fake: FakeWindows, service: DriverService) -> None:
    with pytest.raises(DriverError, match=r"not installed \(procobsrv driver install\)"):
        service.start()
    assert fake.names() == [OPEN_SCM, "OpenServiceW", CLOSE]
    assert closed_everything(fake)


def test_stop_sequence_waits_for_stopped(fake: FakeWindows, service: DriverService) -> None:
    service.install()
    service.start()
    fake.stop_pending_polls = 2
    fake.calls.clear()
    assert service.stop() is True
    assert fake.names() == [
        OPEN_SCM,
        "OpenServiceW",
        "ControlService",
        "QueryServiceStatus",
        "QueryServiceStatus",
        "QueryServiceStatus",
        CLOSE,
        CLOSE,
    ]
    assert fake.calls[1][1][2] == winapi.SERVICE_STOP | winapi.SERVICE_QUERY_STATUS
    assert fake.calls[2][1][1] == winapi.SERVICE_CONTROL_STOP
    assert fake.driver is None
    assert closed_everything(fake)


def test_stop_when_not_running(fake: FakeWindows, service: DriverService) -> None:
    service.install()
    fake.calls.clear()
    assert service.stop() is False
    assert fake.names() == [OPEN_SCM, "OpenServiceW", "ControlService", CLOSE, CLOSE]


def test_stop_times_out_with_a_reason(fake: FakeWindows, sys_file: str) -> None:
    clock = iter(range(100))
    service = DriverService(
        sys_file,
        api=fake.api(),
        stop_timeout=3,
        sleep=lambda s: None,
        clock=lambda: float(next(clock)),
    )
    service.install()
    service.start()
    fake.stop_pending_polls = 50
    with pytest.raises(DriverError, match=r"did not stop within 3 s"):
        service.stop()
    assert closed_everything(fake)


def test_remove_sequence(fake: FakeWindows, service: DriverService) -> None:
    service.install()
    fake.calls.clear()
    assert service.remove() is True
    assert fake.names() == [
        OPEN_SCM,
        "OpenServiceW",
        "QueryServiceConfigW",
        "QueryServiceConfigW",
        "DeleteService",
        CLOSE,
        CLOSE,
    ]
    assert fake.calls[1][1][2] == winapi.DELETE | winapi.SERVICE_QUERY_CONFIG
    assert "ProcObsrv" not in fake.services
    assert service.remove() is False
    assert closed_everything(fake)


def test_remove_failure_still_closes(fake: FakeWindows, service: DriverService) -> None:
    service.install()
    fake.fail("DeleteService", winapi.ERROR_ACCESS_DENIED)
    with pytest.raises(DriverError, match="access denied"):
        service.remove()
    assert closed_everything(fake)


def test_status(fake: FakeWindows, service: DriverService) -> None:
    assert service.status() == installer.DriverStatus("ProcObsrv", installed=False)
    service.install()
    service.start()
    status = service.status()
    assert (status.installed, status.state, status.binary_path) == (
        True,
        ServiceState.RUNNING,
        service.path,
    )
    assert status.running
    assert status.describe() == f"ProcObsrv: running ({service.path})"
    assert closed_everything(fake)


def test_status_needs_no_administrator(fake: FakeWindows, service: DriverService) -> None:
    service.install()
    fake.admin = False
    assert service.status().state is ServiceState.STOPPED


# --- the context manager ---------------------------------------------------------------------
def test_loaded_driver_leaves_the_system_as_found(
    fake: FakeWindows, service: DriverService
) -> None:
    with LoadedDriver(service) as loaded:
        assert loaded is service
        assert fake.services["ProcObsrv"].state == winapi.SERVICE_RUNNING
    assert fake.services == {}
    assert fake.driver is None
    skip = (OPEN_SCM, CLOSE, "OpenServiceW", "QueryServiceConfigW", "GetSystemDirectoryW")
    assert [n for n in fake.names() if n not in skip] == [
        "CreateServiceW",
        "StartServiceW",
        "ControlService",
        "DeleteService",
    ]
    assert closed_everything(fake)


def test_loaded_driver_keeps_what_was_there(fake: FakeWindows, service: DriverService) -> None:
    service.install()  # by an administrator, earlier: ours
    fake.services["ProcObsrv"].state = winapi.SERVICE_RUNNING
    fake.driver = object()  # type: ignore[assignment]
    with LoadedDriver(service):
        pass
    assert fake.services["ProcObsrv"].state == winapi.SERVICE_RUNNING
    assert "ControlService" not in fake.names() and "DeleteService" not in fake.names()


def test_loaded_driver_stops_but_keeps_a_stopped_registration(
    fake: FakeWindows, service: DriverService
) -> None:
    service.install()
    with LoadedDriver(service):
        pass
    assert fake.services["ProcObsrv"].state == winapi.SERVICE_STOPPED


def test_loaded_driver_undoes_install_when_start_fails(
    fake: FakeWindows, service: DriverService
) -> None:
    fake.test_signing = False
    with pytest.raises(DriverError, match="testsigning"), LoadedDriver(service):
        pytest.fail("body must not run")
    assert fake.services == {}
    assert closed_everything(fake)


def test_loaded_driver_cleans_up_when_the_body_fails(
    fake: FakeWindows, service: DriverService
) -> None:
    with pytest.raises(KeyError), LoadedDriver(service):
        raise KeyError("boom")
    assert fake.services == {} and fake.driver is None


def test_loaded_driver_removes_even_when_stop_fails(
    fake: FakeWindows, service: DriverService, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(DriverError, match="cannot stop"), LoadedDriver(service):
        fake.fail("ControlService", winapi.ERROR_GEN_FAILURE)
    assert "ProcObsrv" not in fake.services  # DeleteService was still attempted
    assert "leaving the driver loaded" in caplog.text
    assert closed_everything(fake)


def test_loaded_driver_cleanup_error_does_not_mask_the_body_error(
    fake: FakeWindows, service: DriverService
) -> None:
    with pytest.raises(KeyError), LoadedDriver(service):
        fake.fail("ControlService", winapi.ERROR_GEN_FAILURE)
        fake.fail("DeleteService", winapi.ERROR_ACCESS_DENIED)
        raise KeyError("body")
    assert closed_everything(fake)


def test_driver_error_is_a_monitor_error() -> None:
    assert issubclass(DriverError, MonitorError)


# --- helpers ---------------------------------------------------------------------------------
def test_utf16z_in_reads_inside_the_buffer_only() -> None:
    buffer = ctypes.create_string_buffer(32)
    text = "C:\\é.sys\0".encode("utf-16-le")
    ctypes.memmove(ctypes.addressof(buffer) + 4, text, len(text))
    assert utf16z_in(buffer, ctypes.addressof(buffer) + 4) == "C:\\é.sys"
    assert utf16z_in(buffer, None) == ""
    with pytest.raises(ValueError):
        utf16z_in(buffer, ctypes.addressof(buffer) + 64)


def test_install_turns_every_windows_error_into_a_driver_error(
    fake: FakeWindows, service: DriverService
) -> None:
    # Issue 13 item 18: reading the existing registration failed with a raw WinApiError.
    fake.services["ProcObsrv"] = Service("C:\\other\\x.sys")
    fake.fail("QueryServiceConfigW", winapi.ERROR_ACCESS_DENIED)
    with pytest.raises(DriverError, match=r"access denied.*Run as administrator") as info:
        service.install()
    assert isinstance(info.value.__cause__, winapi.WinApiError)
    assert closed_everything(fake)


# --- where the driver is loaded from (issue 13 item 15) ---------------------------------------
def drivers_dir(fake: FakeWindows) -> Path:
    return Path(fake.system_directory) / "drivers"


def test_install_copies_the_driver_to_the_admin_only_drivers_directory(
    fake: FakeWindows, service: DriverService, sys_file: str
) -> None:
    # The service pointed straight into the (user-writable) package directory.
    Path(sys_file).write_bytes(b"MZ driver bytes")
    service.install()
    registered = fake.services["ProcObsrv"].path
    assert registered == str(drivers_dir(fake) / "ProcObsrv.sys") == service.path
    assert registered != sys_file
    assert Path(registered).read_bytes() == b"MZ driver bytes"
    assert "GetSystemDirectoryW" in fake.names()  # located by the API, not by %SystemRoot%


def test_loaded_driver_refuses_a_registration_pointing_elsewhere(
    fake: FakeWindows, service: DriverService
) -> None:
    fake.services["ProcObsrv"] = Service("C:\\Users\\eve\\venv\\ProcObsrv.sys")
    refused = r"points to C:\\Users\\eve\\venv\\ProcObsrv.sys"
    with pytest.raises(DriverError, match=refused), LoadedDriver(service):
        pytest.fail("body must not run")
    assert "StartServiceW" not in fake.names()
    assert fake.services["ProcObsrv"].path == "C:\\Users\\eve\\venv\\ProcObsrv.sys"
    assert closed_everything(fake)


def test_loaded_driver_refuses_a_running_driver_that_is_not_ours(
    fake: FakeWindows, service: DriverService
) -> None:
    fake.start_driver_directly()  # registered for C:\drv\ProcObsrv.sys and running
    refused = r"points to C:\\drv\\ProcObsrv.sys.*procobsrv driver"
    with pytest.raises(DriverError, match=refused), LoadedDriver(service):
        pytest.fail("body must not run")
    assert fake.services["ProcObsrv"].state == winapi.SERVICE_RUNNING  # left alone
    assert closed_everything(fake)


def test_loaded_driver_reuses_what_a_crashed_run_left_when_it_is_ours(
    fake: FakeWindows, service: DriverService
) -> None:
    service.install()
    service.start()  # ... and the process that did this died
    fake.calls.clear()
    with LoadedDriver(service):
        pass
    assert {"CreateServiceW", "StartServiceW", "ControlService"}.isdisjoint(fake.names())
    assert fake.services["ProcObsrv"].state == winapi.SERVICE_RUNNING  # not ours to undo
    assert closed_everything(fake)


@pytest.mark.parametrize("running", [False, True], ids=["registered", "running"])
def test_a_registration_whose_file_was_replaced_is_refused(
    fake: FakeWindows, service: DriverService, running: bool
) -> None:
    service.install()
    if running:
        service.start()
    Path(service.path).write_bytes(b"MZ something else")
    refused = r"SHA-256 differs.*procobsrv driver remove"
    with pytest.raises(DriverError, match=refused), LoadedDriver(service):
        pytest.fail("body must not run")
    with pytest.raises(DriverError, match=r"SHA-256 differs"):
        service.install()
    assert closed_everything(fake)


def test_a_copy_that_cannot_be_made_is_a_driver_error(
    fake: FakeWindows, service: DriverService
) -> None:
    (drivers_dir(fake) / "ProcObsrv.sys").mkdir()  # in the way
    with pytest.raises(DriverError, match=r"cannot copy the driver to .*ProcObsrv.sys"):
        service.install()
    assert "ProcObsrv" not in fake.services
    assert closed_everything(fake)


def test_remove_deletes_the_copy(fake: FakeWindows, service: DriverService) -> None:
    with LoadedDriver(service):
        assert Path(service.path).is_file()
    assert not Path(service.path).exists() and fake.services == {}


def test_a_copy_that_does_not_verify_is_not_registered(
    fake: FakeWindows, service: DriverService, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def replace_then_tamper(src: str, dst: str) -> None:  # someone writes after our rename
        real_replace(src, dst)
        Path(dst).write_bytes(b"MZ not ours")

    monkeypatch.setattr(installer.os, "replace", replace_then_tamper)
    with pytest.raises(DriverError, match=r"does not match .*SHA-256"):
        service.install()
    assert "ProcObsrv" not in fake.services
    assert closed_everything(fake)
