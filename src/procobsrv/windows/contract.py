"""ctypes mirror of ``driver/ProcObsrv.h``, the driver's contract with user mode.

Every struct, IOCTL code, limit, flag and name of the header is here once, under its C name
in :data:`STRUCTURES`, :data:`CONSTANTS` and :data:`STRINGS`, so that
``tests/windows/test_contract.py`` can turn them into ``_Static_assert``s and compile
those against the header with ``x86_64-w64-mingw32-gcc`` and the native gcc. WCHAR strings
are decoded from bytes as UTF-16 (``ctypes.c_wchar`` is 4 bytes off Windows).
"""

from __future__ import annotations

import ctypes

from ..layout import struct_for
from . import winapi

u16 = ctypes.c_uint16
u32 = ctypes.c_uint32
u64 = ctypes.c_uint64

ABI_VERSION = 2

# --- Names ------------------------------------------------------------------------------------
DRIVER_NAME = "ProcObsrv"
DEVICE_NAME = "\\Device\\ProcObsrv"
DOS_DEVICE_NAME = "\\DosDevices\\ProcObsrv"
USER_DEVICE_PATH = "\\\\.\\ProcObsrv"
EVENT_NAME = "\\BaseNamedObjects\\ProcObsrvProcessEvent"
USER_EVENT_NAME = "Global\\ProcObsrvProcessEvent"


# --- IOCTL codes ------------------------------------------------------------------------------
DEVICE_TYPE = 0x8022
METHOD_BUFFERED = 0
FILE_READ_DATA = 1
FILE_WRITE_DATA = 2


def ctl_code(device_type: int, function: int, method: int, access: int) -> int:
    """``CTL_CODE`` / ``PROCOBSRV_CTL_CODE``."""
    return (device_type << 16) | (access << 14) | (function << 2) | method


IOCTL_ACTIVATE = 0x8022A000
IOCTL_DEACTIVATE = 0x8022A004
IOCTL_GET_EVENTS = 0x8022A008
IOCTL_GET_STATS = 0x8022600C
IOCTL_INJECT = 0x8022A010

# --- Limits -----------------------------------------------------------------------------------
MAX_IMAGE_CHARS = 1024
MAX_COMMAND_LINE_CHARS = 2048
#: ``PROCOBSRV_WCHAR_BYTES``: the header's WCHAR is Win32's (checked against the header).
WCHAR_BYTES = winapi.WCHAR_BYTES
RECORD_ALIGN = 8
RECORD_HEADER_SIZE = 48
MAX_RECORD_SIZE = RECORD_HEADER_SIZE + WCHAR_BYTES * (MAX_IMAGE_CHARS + MAX_COMMAND_LINE_CHARS)
MIN_EVENTS_BUFFER = MAX_RECORD_SIZE
RECOMMENDED_EVENTS_BUFFER = 65536
QUEUE_CAPACITY_BYTES = 1024 * 1024
INJECT_MAX_COUNT = 4096


def record_size(image_chars: int, command_line_chars: int) -> int:
    """``PROCOBSRV_RECORD_SIZE``: bytes of a record with these string lengths."""
    unaligned = RECORD_HEADER_SIZE + WCHAR_BYTES * (image_chars + command_line_chars)
    return (unaligned + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1)


# --- Records ----------------------------------------------------------------------------------
KIND_CREATE = 1
KIND_EXIT = 2

RECORD_IMAGE_TRUNCATED = 0x1
RECORD_COMMAND_LINE_TRUNCATED = 0x2
RECORD_NO_DETAILS = 0x4
RECORD_EXIT_STATUS_UNKNOWN = 0x8
RECORD_INJECTED = 0x80000000


class Record(ctypes.Structure):
    """``PROCOBSRV_RECORD``: the fixed header of one variable-length record (48 bytes)."""

    _fields_ = (
        ("size", u32),
        ("kind", u32),
        ("sequence", u64),
        ("timestamp", u64),
        ("pid", u32),
        ("parent_pid", u32),
        ("exit_status", u32),
        ("flags", u32),
        ("image_length", u16),
        ("command_line_length", u16),
        ("reserved", u32),
    )


#: :class:`Record` as one ``struct`` unpack (little-endian, as on every Windows the driver
#: builds for), made from its fields so that the two cannot disagree.
RECORD_HEADER = struct_for(Record)
assert RECORD_HEADER.size == RECORD_HEADER_SIZE


# --- Stats ------------------------------------------------------------------------------------
STATE_ACTIVE = 0x1
STATE_NOTIFY_EX = 0x2
STATE_SELFTEST = 0x4


class Stats(ctypes.Structure):
    """``PROCOBSRV_STATS`` (56 bytes); notified == delivered + dropped + queued_records."""

    _fields_ = (
        ("size", u32),
        ("abi_version", u32),
        ("state", u32),
        ("queued_records", u32),
        ("queued_bytes", u32),
        ("capacity_bytes", u32),
        ("peak_queued_bytes", u32),
        ("max_record_size", u32),
        ("notified", u64),
        ("delivered", u64),
        ("dropped", u64),
    )


# --- Inputs -----------------------------------------------------------------------------------
ACTIVATE_CLASSIC_ONLY = 0x1
ACTIVATE_VALID_FLAGS = 0x1


class ActivateInput(ctypes.Structure):
    """``PROCOBSRV_ACTIVATE_INPUT`` (16 bytes)."""

    _fields_ = (
        ("size", u32),
        ("abi_version", u32),
        ("flags", u32),
        ("reserved", u32),
    )


class InjectInput(ctypes.Structure):
    """``PROCOBSRV_INJECT_INPUT`` (32 bytes), followed by the image and command line WCHARs."""

    _fields_ = (
        ("kind", u32),
        ("count", u32),
        ("pid", u32),
        ("parent_pid", u32),
        ("exit_status", u32),
        ("reserved", u32),
        ("image_length", u16),
        ("command_line_length", u16),
        ("reserved2", u32),
    )


#: Every struct of the header, by its C typedef name.
STRUCTURES: dict[str, type[ctypes.Structure]] = {
    "PROCOBSRV_RECORD": Record,
    "PROCOBSRV_STATS": Stats,
    "PROCOBSRV_ACTIVATE_INPUT": ActivateInput,
    "PROCOBSRV_INJECT_INPUT": InjectInput,
}

#: Every integer macro of the header, by its C name.
CONSTANTS: dict[str, int] = {
    "PROCOBSRV_ABI_VERSION": ABI_VERSION,
    "PROCOBSRV_DEVICE_TYPE": DEVICE_TYPE,
    "PROCOBSRV_METHOD_BUFFERED": METHOD_BUFFERED,
    "PROCOBSRV_FILE_READ_DATA": FILE_READ_DATA,
    "PROCOBSRV_FILE_WRITE_DATA": FILE_WRITE_DATA,
    "IOCTL_PROCOBSRV_ACTIVATE": IOCTL_ACTIVATE,
    "IOCTL_PROCOBSRV_DEACTIVATE": IOCTL_DEACTIVATE,
    "IOCTL_PROCOBSRV_GET_EVENTS": IOCTL_GET_EVENTS,
    "IOCTL_PROCOBSRV_GET_STATS": IOCTL_GET_STATS,
    "IOCTL_PROCOBSRV_INJECT": IOCTL_INJECT,
    "PROCOBSRV_MAX_IMAGE_CHARS": MAX_IMAGE_CHARS,
    "PROCOBSRV_MAX_COMMAND_LINE_CHARS": MAX_COMMAND_LINE_CHARS,
    "PROCOBSRV_WCHAR_BYTES": WCHAR_BYTES,
    "PROCOBSRV_RECORD_ALIGN": RECORD_ALIGN,
    "PROCOBSRV_RECORD_HEADER_SIZE": RECORD_HEADER_SIZE,
    "PROCOBSRV_MAX_RECORD_SIZE": MAX_RECORD_SIZE,
    "PROCOBSRV_MIN_EVENTS_BUFFER": MIN_EVENTS_BUFFER,
    "PROCOBSRV_RECOMMENDED_EVENTS_BUFFER": RECOMMENDED_EVENTS_BUFFER,
    "PROCOBSRV_QUEUE_CAPACITY_BYTES": QUEUE_CAPACITY_BYTES,
    "PROCOBSRV_INJECT_MAX_COUNT": INJECT_MAX_COUNT,
    "PROCOBSRV_KIND_CREATE": KIND_CREATE,
    "PROCOBSRV_KIND_EXIT": KIND_EXIT,
    "PROCOBSRV_RECORD_IMAGE_TRUNCATED": RECORD_IMAGE_TRUNCATED,
    "PROCOBSRV_RECORD_COMMAND_LINE_TRUNCATED": RECORD_COMMAND_LINE_TRUNCATED,
    "PROCOBSRV_RECORD_NO_DETAILS": RECORD_NO_DETAILS,
    "PROCOBSRV_RECORD_EXIT_STATUS_UNKNOWN": RECORD_EXIT_STATUS_UNKNOWN,
    "PROCOBSRV_RECORD_INJECTED": RECORD_INJECTED,
    "PROCOBSRV_STATE_ACTIVE": STATE_ACTIVE,
    "PROCOBSRV_STATE_NOTIFY_EX": STATE_NOTIFY_EX,
    "PROCOBSRV_STATE_SELFTEST": STATE_SELFTEST,
    "PROCOBSRV_ACTIVATE_CLASSIC_ONLY": ACTIVATE_CLASSIC_ONLY,
    "PROCOBSRV_ACTIVATE_VALID_FLAGS": ACTIVATE_VALID_FLAGS,
}

#: Every string macro of the header (all ``L"..."``), by its C name.
STRINGS: dict[str, str] = {
    "PROCOBSRV_DRIVER_NAME": DRIVER_NAME,
    "PROCOBSRV_DEVICE_NAME": DEVICE_NAME,
    "PROCOBSRV_DOS_DEVICE_NAME": DOS_DEVICE_NAME,
    "PROCOBSRV_USER_DEVICE_PATH": USER_DEVICE_PATH,
    "PROCOBSRV_EVENT_NAME": EVENT_NAME,
    "PROCOBSRV_USER_EVENT_NAME": USER_EVENT_NAME,
}

#: Function-like macros, mirrored as Python functions (checked on sample arguments).
FUNCTIONS = {
    "PROCOBSRV_CTL_CODE": ctl_code,
    "PROCOBSRV_RECORD_SIZE": record_size,
}

#: Helper macros of the header that are not part of the contract's values.
HELPER_MACROS = frozenset({"PROCOBSRV_H", "PROCOBSRV_STATIC_ASSERT", "PROCOBSRV_CHECK_OFFSET"})
