"""Register, load, unload and unregister ProcObsrv.sys through the Service Control Manager.

The article's fourth goal: the driver is installed dynamically as a demand-start kernel-driver
service, started (``DriverEntry`` runs), stopped (``DriverUnload`` runs) and deleted again.
:class:`LoadedDriver` does it around a block of code and leaves the system as it found it,
also when a step fails half-way.

Where it loads from: never from where the package lives (a venv or ``--user`` site-packages
is writable by a user, and whoever can replace a registered driver file runs code in the
kernel the next time an administrator starts the service). ``install`` copies the packaged
file into the ``drivers`` directory under ``GetSystemDirectoryW()`` (writable by
administrators only), checks that the copy's SHA-256 equals the packaged file's, and
registers that copy. A registration found in place, also one a crashed run left, is used
only if it is ours: that very path, and a file there with the packaged file's SHA-256.
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ..errors import MonitorError
from . import winapi
from .paths import normalize_image_path
from .winapi import WinApi, WinApiError

log = logging.getLogger(__name__)

#: Service name, display name and device/driver object name of the driver.
SERVICE_NAME = "ProcObsrv"
#: WCHARs of GetSystemDirectoryW's buffer (MAX_PATH).
MAX_PATH = 260
#: How long :meth:`DriverService.stop` waits for STOPPED by default (seconds).
STOP_TIMEOUT = 15.0
#: How often :meth:`DriverService.stop` asks whether STOP_PENDING is over (seconds).
STOP_POLL_INTERVAL = 0.05


def bundled_driver() -> Path:
    """The ProcObsrv.sys shipped inside the package (``make -C driver`` builds it)."""
    return Path(__file__).resolve().parent / "bin" / "ProcObsrv.sys"


class ServiceState(enum.IntEnum):
    """``SERVICE_STATUS.dwCurrentState``, named (the values are winapi's ``SERVICE_*``)."""

    STOPPED = winapi.SERVICE_STOPPED
    START_PENDING = winapi.SERVICE_START_PENDING
    STOP_PENDING = winapi.SERVICE_STOP_PENDING
    RUNNING = winapi.SERVICE_RUNNING
    CONTINUE_PENDING = winapi.SERVICE_CONTINUE_PENDING
    PAUSE_PENDING = winapi.SERVICE_PAUSE_PENDING
    PAUSED = winapi.SERVICE_PAUSED


@dataclass(frozen=True)
class DriverStatus:
    """What ``procobsrv driver status`` shows."""

    name: str
    installed: bool
    state: ServiceState | None = None
    binary_path: str | None = None

    @property
    def running(self) -> bool:
        return self.state is ServiceState.RUNNING

    def describe(self) -> str:
        if not self.installed:
            return f"{self.name}: not installed"
        state = self.state.name.lower().replace("_", " ") if self.state else "unknown"
        return f"{self.name}: {state} ({self.binary_path or 'no binary path'})"


class DriverError(MonitorError):
    """The driver could not be installed, started, stopped or removed; says what to do."""

    def __init__(self, message: str, winerror: int | None = None) -> None:
        super().__init__(message)
        self.winerror = winerror


def _explain(exc: WinApiError, action: str, name: str, path: str | None) -> DriverError:
    """A :class:`DriverError` for the usual reasons ``action`` fails."""
    code = exc.winerror
    if code in (winapi.ERROR_ACCESS_DENIED, winapi.ERROR_PRIVILEGE_NOT_HELD):
        text = (
            f"cannot {action} the {name} driver: access denied. Loading a kernel driver needs "
            f"an elevated prompt (Run as administrator)."
        )
    elif code == winapi.ERROR_INVALID_IMAGE_HASH:
        text = (
            f"Windows refused to load {path or name}: its signature is not accepted. Sign it "
            f"with a test certificate and enable test signing ('bcdedit /set testsigning on', "
            f"Secure Boot off, reboot), or use a production-signed build."
        )
    elif code == winapi.ERROR_DRIVER_BLOCKED:
        text = (
            f"Windows blocked {path or name} (driver blocklist or Memory integrity/HVCI); "
            f"it cannot be loaded on this system as configured."
        )
    elif code in (winapi.ERROR_FILE_NOT_FOUND, winapi.ERROR_PATH_NOT_FOUND):
        text = (
            f"cannot {action} the {name} driver: its file {path or '(unknown)'} is missing. "
            f"Build it with 'make -C driver' or pass the path of ProcObsrv.sys."
        )
    elif code == winapi.ERROR_BAD_EXE_FORMAT:
        text = f"{path or name} is not a driver for this processor (an x64 build is needed)."
    elif code == winapi.ERROR_SERVICE_DISABLED:
        text = f"the {name} service is disabled; enable it with 'sc config {name} start= demand'."
    elif code == winapi.ERROR_SERVICE_MARKED_FOR_DELETE:
        text = (
            f"the {name} service is marked for deletion but still open somewhere; close "
            f"services.msc/sc.exe and programs using the driver, or reboot, then retry."
        )
    else:
        text = f"cannot {action} the {name} driver: {exc}"
    return DriverError(text, code)


def sha256_of(path: str) -> str | None:
    """The file's SHA-256 (hex), or None when it cannot be read."""
    try:
        with open(path, "rb") as file:
            return hashlib.sha256(file.read()).hexdigest()
    except OSError:
        return None


class DriverService:
    """The ProcObsrv kernel-driver service: install, start, stop, remove, status.

    The ``path`` argument, kept as :attr:`source`, is the driver file to install (default:
    the one shipped in the package); the :attr:`path` attribute is where it is installed
    and registered, in the system's ``drivers`` directory. Every method opens the Service
    Control Manager and the service, does its work and closes both handles again, on success
    and on every failure path.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        name: str = SERVICE_NAME,
        api: WinApi | None = None,
        stop_timeout: float = STOP_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: The driver file to install (copied from, never registered).
        self.source = str(path) if path is not None else str(bundled_driver())
        self._path: str | None = None
        self.name = name
        self._api = api if api is not None else winapi.api()
        self._stop_timeout = stop_timeout
        self._sleep = sleep
        self._clock = clock

    @property
    def path(self) -> str:
        """Where the driver is installed and registered: ``<system dir>\\drivers\\<name>.sys``.

        Located with ``GetSystemDirectoryW``, not ``%SystemRoot%``, which the caller's
        environment could point anywhere.
        """
        if self._path is None:
            buffer = ctypes.create_string_buffer(winapi.WCHAR_BYTES * MAX_PATH)
            try:
                length = int(self._api.GetSystemDirectoryW(buffer, MAX_PATH))
            except WinApiError as exc:
                raise DriverError(f"cannot locate the system directory: {exc}") from exc
            if length >= MAX_PATH:
                raise DriverError(f"the system directory's path is longer than {MAX_PATH}")
            system = buffer.raw[: winapi.WCHAR_BYTES * length].decode("utf-16-le")
            self._path = os.path.join(system, "drivers", f"{self.name}.sys")
        return self._path

    @property
    def _known_path(self) -> str:
        """For messages: :attr:`path` if already located (no extra call), else the source."""
        return self._path or self.source

    # --- handles -------------------------------------------------------------------------
    def _explain(self, exc: WinApiError, action: str) -> DriverError:
        return _explain(exc, action, self.name, self._known_path)

    @contextmanager
    def _manager(self, access: int, action: str) -> Iterator[int]:
        """The Service Control Manager's handle, closed on exit."""
        try:
            scm = int(self._api.OpenSCManagerW(None, None, access))
        except WinApiError as exc:
            raise self._explain(exc, action) from exc
        try:
            yield scm
        finally:
            self._close(scm)

    @contextmanager
    def _service_if_installed(self, scm: int, access: int, action: str) -> Iterator[int | None]:
        """The service's handle, closed on exit; None when no such service is registered."""
        try:
            service: int | None = int(self._api.OpenServiceW(scm, self.name, access))
        except WinApiError as exc:
            if exc.winerror != winapi.ERROR_SERVICE_DOES_NOT_EXIST:
                raise self._explain(exc, action) from exc
            service = None
        if service is None:
            yield None
            return
        try:
            yield service
        finally:
            self._close(service)

    @contextmanager
    def _open_service(self, access: int, action: str) -> Iterator[int | None]:
        """The service's handle, through a connect-only SCM handle; None if not installed.

        Both handles are closed on exit, the service's first.
        """
        with (
            self._manager(winapi.SC_MANAGER_CONNECT, action) as scm,
            self._service_if_installed(scm, access, action) as service,
        ):
            yield service

    @contextmanager
    def _open_installed(self, access: int, action: str) -> Iterator[int]:
        """:meth:`_open_service`, with a DriverError when the service is not installed."""
        with self._open_service(access, action) as service:
            if service is None:
                raise DriverError(
                    f"cannot {action} the {self.name} driver: it is not installed "
                    f"(procobsrv driver install)",
                    winapi.ERROR_SERVICE_DOES_NOT_EXIST,
                )
            yield service

    def _close(self, handle: int) -> None:
        try:
            self._api.CloseServiceHandle(handle)
        except WinApiError as exc:  # nothing sensible to do; never mask the real error
            log.warning("CloseServiceHandle failed: %s", exc)

    # --- operations ----------------------------------------------------------------------
    def install(self) -> bool:
        """Copy, verify and register the driver; True if registered now, False if reused.

        An existing registration is reused only if it is ours (see :meth:`check_ours`);
        anything else is refused with what to do.
        """
        try:
            with open(self.source, "rb") as file:
                data = file.read()
        except OSError as exc:
            raise DriverError(
                f"driver file {self.source} is missing: build it with 'make -C driver' or pass "
                f"the path of ProcObsrv.sys",
                winapi.ERROR_FILE_NOT_FOUND,
            ) from exc
        digest = hashlib.sha256(data).hexdigest()
        access = winapi.SC_MANAGER_CONNECT | winapi.SC_MANAGER_CREATE_SERVICE
        with self._manager(access, "install") as scm:
            current = self._registered_path(scm)
            if current is not None:
                self.check_ours(current, digest)
                log.info("reusing the existing %s service (%s)", self.name, current)
                return False
            self._place(data, digest)
            try:
                service = int(
                    self._api.CreateServiceW(
                        scm,
                        self.name,
                        self.name,
                        winapi.SERVICE_ALL_ACCESS,
                        winapi.SERVICE_KERNEL_DRIVER,
                        winapi.SERVICE_DEMAND_START,
                        winapi.SERVICE_ERROR_NORMAL,
                        self.path,
                        None,
                        None,
                        None,
                        None,
                        None,
                    )
                )
            except WinApiError as exc:
                self._discard_copy()  # nothing registers it: leave the system as it was
                raise self._explain(exc, "install") from exc
            self._close(service)
        log.info(
            "installed the %s service for %s (copied from %s)", self.name, self.path, self.source
        )
        return True

    def check_ours(self, binary_path: str, digest: str | None = None) -> None:
        """Raise DriverError unless ``binary_path`` is :attr:`path` holding our driver.

        Ours means: the registration names :attr:`path`, and the file there has the same
        SHA-256 as :attr:`source` (``digest``, when the caller has already hashed it).
        """
        if normalize_image_path(binary_path) != normalize_image_path(self.path):
            raise DriverError(
                f"a service named {self.name} already exists and points to {binary_path}, "
                f"not {self.path}; procobsrv loads only its own copy there. If it is a "
                f"leftover, remove it (procobsrv driver stop; procobsrv driver remove)",
                winapi.ERROR_SERVICE_EXISTS,
            )
        expected = digest if digest is not None else sha256_of(self.source)
        if expected is None:
            raise DriverError(
                f"cannot verify the registered {self.name} driver: the packaged file "
                f"{self.source} is missing (build it with 'make -C driver')",
                winapi.ERROR_FILE_NOT_FOUND,
            )
        if sha256_of(self.path) != expected:
            raise DriverError(
                f"the {self.name} driver registered at {self.path} is not the one shipped with "
                f"this procobsrv (its SHA-256 differs from {self.source}); replace it with "
                f"procobsrv driver stop; procobsrv driver remove; procobsrv driver install",
                winapi.ERROR_SERVICE_EXISTS,
            )

    def _registered_path(self, scm: int) -> str | None:
        """The binary path of the existing service, or None when there is none."""
        with self._service_if_installed(scm, winapi.SERVICE_QUERY_CONFIG, "install") as service:
            return None if service is None else self._binary_path(service, "install")

    def _place(self, data: bytes, digest: str) -> None:
        """Write ``data`` to :attr:`path` (atomically: temporary file, then rename), verify it."""
        target = self.path
        temporary = f"{target}.{os.getpid()}.tmp"
        try:
            with open(temporary, "wb") as file:
                file.write(data)
            os.replace(temporary, target)
        except OSError as exc:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise DriverError(
                f"cannot copy the driver to {target}: {exc.strerror or exc}; installing a "
                f"kernel driver needs an elevated prompt (Run as administrator)"
            ) from exc
        if sha256_of(target) != digest:
            raise DriverError(
                f"the copy of the driver at {target} does not match {self.source} (SHA-256); "
                f"something else is writing there: not loading it"
            )

    def _discard_copy(self) -> None:
        """Delete the copy at :attr:`path` (gone already is fine; a failure is logged)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # e.g. still loaded: nothing better to do than say so
            log.warning("could not delete %s: %s", self.path, exc)

    def start(self) -> bool:
        """Load the driver; True if it was started now, False if it was already running."""
        with self._open_installed(winapi.SERVICE_START, "start") as service:
            try:
                self._api.StartServiceW(service, 0, None)
            except WinApiError as exc:
                if exc.winerror == winapi.ERROR_SERVICE_ALREADY_RUNNING:
                    return False
                raise self._explain(exc, "start") from exc
        log.info("started the %s driver", self.name)
        return True

    def stop(self) -> bool:
        """Unload the driver; True if it was stopped now, False if it was not running."""
        access = winapi.SERVICE_STOP | winapi.SERVICE_QUERY_STATUS
        with self._open_installed(access, "stop") as service:
            status = winapi.SERVICE_STATUS()
            try:
                self._api.ControlService(service, winapi.SERVICE_CONTROL_STOP, ctypes.byref(status))
            except WinApiError as exc:
                if exc.winerror == winapi.ERROR_SERVICE_NOT_ACTIVE:
                    return False
                if exc.winerror != winapi.ERROR_SERVICE_CANNOT_ACCEPT_CTRL:
                    raise self._explain(exc, "stop") from exc
                status.dwCurrentState = ServiceState.STOP_PENDING
            deadline = self._clock() + self._stop_timeout
            while status.dwCurrentState != ServiceState.STOPPED:
                if self._clock() >= deadline:
                    raise DriverError(
                        f"the {self.name} driver did not stop within {self._stop_timeout:g} s "
                        f"(state {status.dwCurrentState}); something still holds its device open"
                    )
                self._sleep(STOP_POLL_INTERVAL)
                try:
                    self._api.QueryServiceStatus(service, ctypes.byref(status))
                except WinApiError as exc:
                    raise self._explain(exc, "stop") from exc
        log.info("stopped the %s driver", self.name)
        return True

    def remove(self) -> bool:
        """Unregister the driver (and delete our copy of it); True if deleted now, False if it
        was not installed."""
        access = winapi.DELETE | winapi.SERVICE_QUERY_CONFIG
        with self._open_service(access, "remove") as service:
            if service is None:
                return False
            try:
                binary = self._binary_path(service, "remove")
                self._api.DeleteService(service)
            except WinApiError as exc:
                if exc.winerror == winapi.ERROR_SERVICE_MARKED_FOR_DELETE:
                    return False
                raise self._explain(exc, "remove") from exc
        log.info("removed the %s service", self.name)
        if normalize_image_path(binary) == normalize_image_path(self.path):
            self._discard_copy()  # a failure leaves a file, the service is gone all the same
        return True

    def status(self) -> DriverStatus:
        """Whether the service exists, its state and the driver file it points to."""
        access = winapi.SERVICE_QUERY_STATUS | winapi.SERVICE_QUERY_CONFIG
        with self._open_service(access, "query") as service:
            if service is None:
                return DriverStatus(self.name, installed=False)
            status = winapi.SERVICE_STATUS()
            try:
                self._api.QueryServiceStatus(service, ctypes.byref(status))
            except WinApiError as exc:
                raise self._explain(exc, "query") from exc
            binary = self._binary_path(service, "query")
        try:
            state: ServiceState | None = ServiceState(status.dwCurrentState)
        except ValueError:
            state = None
        return DriverStatus(self.name, True, state, binary)

    def _binary_path(self, service: int, action: str) -> str:
        """``QueryServiceConfigW``'s lpBinaryPathName (sized with a first, empty call)."""
        needed = winapi.DWORD(0)
        try:
            self._api.QueryServiceConfigW(service, None, 0, ctypes.byref(needed))
        except WinApiError as exc:
            if exc.winerror != winapi.ERROR_INSUFFICIENT_BUFFER:
                raise self._explain(exc, action) from exc
        size = max(needed.value, ctypes.sizeof(winapi.QUERY_SERVICE_CONFIGW))
        buffer = ctypes.create_string_buffer(size)
        try:
            self._api.QueryServiceConfigW(service, buffer, size, ctypes.byref(needed))
        except WinApiError as exc:
            raise self._explain(exc, action) from exc
        config = winapi.QUERY_SERVICE_CONFIGW.from_buffer(buffer)
        return utf16z_in(buffer, config.lpBinaryPathName)


def utf16z_in(buffer: ctypes.Array[ctypes.c_char], address: int | None) -> str:
    """The NUL-terminated UTF-16 string at ``address`` inside ``buffer``.

    ``ctypes.wstring_at`` would read 4-byte wchar_t off Windows; this works on both.
    """
    if not address:
        return ""
    offset = address - ctypes.addressof(buffer)
    raw = buffer.raw
    if not 0 <= offset < len(raw):
        raise ValueError("string pointer outside the returned buffer")
    end = offset
    while end + 1 < len(raw) and raw[end : end + winapi.WCHAR_BYTES] != b"\0\0":
        end += winapi.WCHAR_BYTES
    return raw[offset:end].decode("utf-16-le", errors="replace")


class LoadedDriver:
    """``with LoadedDriver():`` the driver is installed and running inside the block.

    A registration that already exists (someone else's, or one a crashed run left) is used
    only if it is ours (:meth:`DriverService.check_ours`: our path in the system's drivers
    directory, our file's SHA-256); anything else is refused with a DriverError that says
    what to do. Only what this object did is undone on exit: a driver that was already
    running stays running, a registration that already existed stays registered. A failure
    half-way undoes the steps already taken before the error propagates.
    """

    def __init__(self, service: DriverService | None = None) -> None:
        self.service = service if service is not None else DriverService()
        self.installed = False
        self.started = False

    def __enter__(self) -> DriverService:
        status = self.service.status()
        if status.installed:  # by someone else, or by a run that crashed: only if it is ours
            self.service.check_ours(status.binary_path or "")
            if status.running:
                log.info("the %s driver is already running (%s)", status.name, status.binary_path)
                return self.service
        else:
            self.installed = self.service.install()
        try:
            self.started = self.service.start()
        except BaseException:
            self._undo()
            raise
        return self.service

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        error = self._undo()
        if error is not None and exc is None:
            raise error

    def _undo(self) -> MonitorError | None:
        """Stop what we started and remove what we installed; the first failure, if any."""
        first: MonitorError | None = None
        if self.started:
            self.started = False
            try:
                self.service.stop()
            except MonitorError as exc:
                log.error("leaving the driver loaded: %s", exc)
                first = exc
        if self.installed:
            self.installed = False
            try:
                self.service.remove()
            except MonitorError as exc:
                log.error("leaving the service registered: %s", exc)
                first = first or exc
        return first
