r"""The connection to ProcObsrv.sys: ``\\.\ProcObsrv``, its IOCTLs and its record format.

:class:`Device` opens the device, checks the driver's ABI version, activates and deactivates
monitoring, reads stats and batches of records. :func:`decode_records` turns the bytes of a
``GET_EVENTS`` answer into :class:`DriverRecord`\ s, strictly: a record that does not follow
``ProcObsrv.h`` raises :class:`ProtocolError` instead of being guessed at.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass

from ..errors import MonitorError
from ..events import EventKind, QueuedItem
from . import contract, winapi
from .clock import UNIT_NS, UNITS_PER_SECOND
from .paths import nt_to_dos_path
from .winapi import WinApi, WinApiError

log = logging.getLogger(__name__)

#: FILETIME (100 ns since 1601-01-01 UTC) of the Unix epoch.
FILETIME_UNIX_EPOCH = 116_444_736_000_000_000


class ProtocolError(MonitorError):
    """The driver answered something ``ProcObsrv.h`` does not allow."""


@dataclass(frozen=True)
class DriverRecord:
    """One decoded ``PROCOBSRV_RECORD`` with its strings."""

    kind: int
    sequence: int
    timestamp: int  # interrupt time: 100 ns units since boot (KeQueryInterruptTime)
    pid: int
    parent_pid: int
    exit_status: int
    flags: int
    image: str | None
    command_line: str | None

    def to_item(self, start_ns: int = 0, *, wall_offset: int = 0) -> QueuedItem:
        """The framework's QueuedItem; ``start_ns`` names the process's creation (or 0).

        ``monotonic_ns`` and ``start_ns`` are on the interrupt-time clock, in ns;
        ``wall_offset`` (FILETIME minus interrupt time, see :mod:`.clock`) gives wall time.
        """
        time_ns = self.timestamp * UNIT_NS
        created = self.kind == contract.KIND_CREATE
        details = created and not self.flags & contract.RECORD_NO_DETAILS
        exit_known = not created and not self.flags & contract.RECORD_EXIT_STATUS_UNKNOWN
        return QueuedItem(
            kind=EventKind.CREATED if created else EventKind.EXITED,
            process_id=self.pid,
            parent_id=self.parent_pid,
            timestamp=filetime_to_unix(self.timestamp + wall_offset),
            monotonic_ns=time_ns,
            image=nt_to_dos_path(self.image) if details and self.image else None,
            command_line=(
                split_command_line(self.command_line) if details and self.command_line else None
            ),
            exit_code=self.exit_status if exit_known else None,
            start_ns=time_ns if created else start_ns,
        )


def filetime_to_unix(filetime: int) -> float:
    """Seconds since the Unix epoch for a FILETIME."""
    return (filetime - FILETIME_UNIX_EPOCH) / UNITS_PER_SECOND


def split_command_line(line: str) -> list[str]:
    """argv from a Windows command line, by the rules of ``CommandLineToArgvW``/the CRT.

    The program name ends at the first space (or closing quote) with no backslash
    processing; then 2n backslashes + ``"`` give n backslashes and toggle quoting, 2n+1
    give n backslashes and a literal ``"``, and ``""`` inside quotes is a literal ``"``.
    """
    args: list[str] = []
    i, n = 0, len(line)
    # argv[0]
    if line.startswith('"'):
        end = line.find('"', 1)
        end = n if end < 0 else end
        args.append(line[1:end])
        i = end + 1
    else:
        while i < n and line[i] not in " \t":
            i += 1
        args.append(line[:i])
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            break
        current: list[str] = []
        quoted = False
        while i < n and (quoted or line[i] not in " \t"):
            c = line[i]
            if c == "\\":
                start = i
                while i < n and line[i] == "\\":
                    i += 1
                count = i - start
                if i < n and line[i] == '"':
                    current.append("\\" * (count // 2))
                    if count % 2:
                        current.append('"')
                        i += 1
                else:
                    current.append("\\" * count)
            elif c == '"':
                if quoted and i + 1 < n and line[i + 1] == '"':
                    current.append('"')
                    i += 2
                else:
                    quoted = not quoted
                    i += 1
            else:
                current.append(c)
                i += 1
        args.append("".join(current))
    return args


def decode_records(data: bytes | bytearray | memoryview) -> list[DriverRecord]:
    """The records of one ``GET_EVENTS`` answer (``data`` is exactly the bytes returned)."""
    view = memoryview(data)
    records: list[DriverRecord] = []
    offset, end = 0, len(view)
    header = contract.RECORD_HEADER.size
    while offset < end:
        if end - offset < header:
            raise ProtocolError(f"record at offset {offset} cut short: {end - offset} bytes left")
        (
            size,
            kind,
            sequence,
            timestamp,
            pid,
            ppid,
            exit_status,
            flags,
            image_len,
            cmd_len,
            _reserved,
        ) = contract.RECORD_HEADER.unpack_from(view, offset)
        strings_end = offset + header + contract.WCHAR_BYTES * (image_len + cmd_len)
        if size % contract.RECORD_ALIGN or size < contract.record_size(image_len, cmd_len):
            raise ProtocolError(
                f"record at offset {offset} has size {size} for {image_len}+{cmd_len} WCHARs"
            )
        if offset + size > end:
            raise ProtocolError(
                f"record at offset {offset} ({size} bytes) runs past the {end} bytes returned"
            )
        if kind not in (contract.KIND_CREATE, contract.KIND_EXIT):
            raise ProtocolError(f"record at offset {offset} has unknown kind {kind}")
        image_start = offset + header
        image_end = image_start + contract.WCHAR_BYTES * image_len
        records.append(
            DriverRecord(
                kind=kind,
                sequence=sequence,
                timestamp=timestamp,
                pid=pid,
                parent_pid=ppid,
                exit_status=exit_status,
                flags=flags,
                image=bytes(view[image_start:image_end]).decode("utf-16-le", "replace"),
                command_line=bytes(view[image_end:strings_end]).decode("utf-16-le", "replace"),
            )
        )
        offset += size
    return records


class Device:
    r"""An open handle to ``\\.\ProcObsrv`` (the driver admits one client at a time)."""

    def __init__(
        self,
        api: WinApi | None = None,
        path: str = contract.USER_DEVICE_PATH,
        buffer_size: int = contract.RECOMMENDED_EVENTS_BUFFER,
    ) -> None:
        if buffer_size < contract.MIN_EVENTS_BUFFER:
            raise ValueError(f"buffer_size must be at least {contract.MIN_EVENTS_BUFFER}")
        self._api = api if api is not None else winapi.api()
        self.path = path
        self.buffer_size = buffer_size
        self._buffer = ctypes.create_string_buffer(buffer_size)
        self._returned = winapi.DWORD(0)
        self._handle: int | None = None

    @property
    def handle(self) -> int:
        if self._handle is None:
            raise ValueError("the ProcObsrv device is not open")
        return self._handle

    def open(self) -> None:
        try:
            self._handle = int(
                self._api.CreateFileW(
                    self.path,
                    winapi.GENERIC_READ | winapi.GENERIC_WRITE,
                    0,
                    None,
                    winapi.OPEN_EXISTING,
                    winapi.FILE_ATTRIBUTE_NORMAL,
                    None,
                )
            )
        except WinApiError as exc:
            raise self._explain_open(exc) from exc

    def _explain_open(self, exc: WinApiError) -> MonitorError:
        if exc.winerror in (winapi.ERROR_FILE_NOT_FOUND, winapi.ERROR_PATH_NOT_FOUND):
            return MonitorError(
                f"cannot open {self.path}: the ProcObsrv driver is not loaded "
                f"(procobsrv driver install && procobsrv driver start)"
            )
        if exc.winerror == winapi.ERROR_ACCESS_DENIED:
            return MonitorError(
                f"cannot open {self.path}: access denied; the driver admits administrators "
                f"only (run from an elevated prompt)"
            )
        if exc.winerror == winapi.ERROR_SHARING_VIOLATION:
            return MonitorError(
                f"cannot open {self.path}: another program is already monitoring through the "
                f"driver (it admits one client at a time)"
            )
        return MonitorError(f"cannot open {self.path}: {exc}")

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            self._api.CloseHandle(handle)

    def _ioctl(self, code: int, inbuf: object, inlen: int, outbuf: object, outlen: int) -> int:
        self._api.DeviceIoControl(
            self.handle, code, inbuf, inlen, outbuf, outlen, ctypes.byref(self._returned), None
        )
        return int(self._returned.value)

    def stats(self) -> contract.Stats:
        """``GET_STATS``."""
        stats = contract.Stats()
        size = ctypes.sizeof(stats)
        returned = self._ioctl(contract.IOCTL_GET_STATS, None, 0, ctypes.byref(stats), size)
        if returned != size or stats.size != size:
            raise ProtocolError(
                f"GET_STATS returned {returned} bytes (size field {stats.size}), expected {size}"
            )
        return stats

    def check_abi(self) -> contract.Stats:
        """Stats, after checking the driver speaks this module's ABI version."""
        try:
            stats = self.stats()
        except ProtocolError as exc:
            raise MonitorError(
                f"the loaded ProcObsrv driver does not speak ABI version {contract.ABI_VERSION} "
                f"({exc}); reinstall the driver shipped with this procobsrv"
            ) from exc
        if stats.abi_version != contract.ABI_VERSION:
            raise MonitorError(
                f"the loaded ProcObsrv driver has ABI version {stats.abi_version}, this procobsrv "
                f"needs {contract.ABI_VERSION}: stop it and install the driver shipped with this "
                f"procobsrv (procobsrv driver stop; procobsrv driver remove; ... install)"
            )
        return stats

    def activate(self, flags: int = 0) -> None:
        """``ACTIVATE``: the driver registers its notify routine and starts queueing."""
        request = contract.ActivateInput(
            size=ctypes.sizeof(contract.ActivateInput),
            abi_version=contract.ABI_VERSION,
            flags=flags,
            reserved=0,
        )
        try:
            self._ioctl(
                contract.IOCTL_ACTIVATE, ctypes.byref(request), ctypes.sizeof(request), None, 0
            )
        except WinApiError as exc:
            if exc.winerror == winapi.ERROR_REVISION_MISMATCH:
                raise MonitorError(
                    f"the ProcObsrv driver refused ABI version {contract.ABI_VERSION}; install "
                    f"the driver shipped with this procobsrv"
                ) from exc
            raise MonitorError(f"cannot activate process monitoring in the driver: {exc}") from exc

    def deactivate(self) -> None:
        """``DEACTIVATE``: the driver unregisters its notify routine; queued records stay."""
        self._ioctl(contract.IOCTL_DEACTIVATE, None, 0, None, 0)

    def read(self) -> tuple[list[DriverRecord], int]:
        """One ``GET_EVENTS``: the records and the number of bytes the driver returned."""
        returned = self._ioctl(contract.IOCTL_GET_EVENTS, None, 0, self._buffer, self.buffer_size)
        if returned > self.buffer_size:
            raise ProtocolError(
                f"GET_EVENTS claims {returned} bytes in a {self.buffer_size} buffer"
            )
        if not returned:
            return [], 0
        return decode_records(ctypes.string_at(self._buffer, returned)), returned

    def drained(self, returned: int) -> bool:
        """Whether a read of ``returned`` bytes emptied the queue (the next record would fit)."""
        return self.buffer_size - returned >= contract.MAX_RECORD_SIZE

    def open_event(self) -> int:
        """A SYNCHRONIZE handle to the driver's ``Global\\ProcObsrvProcessEvent``."""
        try:
            return int(self._api.OpenEventW(winapi.SYNCHRONIZE, False, contract.USER_EVENT_NAME))
        except WinApiError as exc:
            raise MonitorError(
                f"cannot open the driver's event {contract.USER_EVENT_NAME}: {exc}"
            ) from exc
