"""The eBPF program's kernel interface, described once: its records and maps as ctypes
structures (the Python side of bpf/procobsrv.h), and the ring buffer's record header
(``<linux/bpf.h>``).

``tests/linux/test_ebpf_abi.py`` compiles ``_Static_assert``s generated from these
declarations against both headers, so that the two sides cannot drift apart.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from ..layout import struct_for

u16, u32, u64 = ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64

#: The shipped object (built by ``make -C bpf`` from bpf/procobsrv.bpf.c).
OBJECT_PATH = Path(__file__).with_name("bpf") / "procobsrv.bpf.o"
#: The ELF section holding the sha256 of the sources the object was built from.
SOURCES_SECTION = "procobsrv_sources"

PO_ARGS_CAP = 4096
PO_PATH_CAP = 4096
PO_NAME_MAX = 256
PO_MAX_DEPTH = 64
PO_COMM_LEN = 16
PO_CGROUPS_REMEMBERED = 8192

PO_FORK, PO_EXEC, PO_EXIT, PO_CGROUP = 1, 2, 3, 4

PO_F_ARGS_TRUNCATED = 1 << 0
PO_F_IMAGE_TRUNCATED = 1 << 1
PO_F_SCRIPT_TRUNCATED = 1 << 2
PO_F_CWD_TRUNCATED = 1 << 3
PO_F_CGROUP_TRUNCATED = 1 << 4
PO_F_ARGS_FAULT = 1 << 5
PO_F_IMAGE_OUTSIDE = 1 << 6
PO_F_IMAGE_DELETED = 1 << 7
PO_F_CWD_DELETED = 1 << 8
PO_F_CGROUP_TAIL_CUT = 1 << 9


class po_event(ctypes.Structure):
    """One ring buffer record's fixed header; ``data`` (argv, paths) follows it."""

    _fields_ = (
        ("kind", u32),
        ("flags", u32),
        ("pid", u32),
        ("ppid", u32),
        ("uid", u32),
        ("euid", u32),
        ("ts_ns", u64),
        ("start_ns", u64),
        ("cgroup_id", u64),
        ("exit_status", u32),
        ("argc", u32),
        ("args_size", u32),
        ("args_len", u16),
        ("image_len", u16),
        ("script_len", u16),
        ("cwd_len", u16),
        ("cgroup_len", u16),
        ("reserved", u16),
        ("comm", ctypes.c_char * PO_COMM_LEN),
        ("creator", u32),
        ("reserved2", u32),
        ("ns_pid", u32),
        ("ns_ppid", u32),
        ("pid_ns", u32),
        ("mnt_ns", u32),
    )


class po_drops(ctypes.Structure):
    """Failed ring buffer writes of one CPU, per kind."""

    _fields_ = (("fork", u64), ("exec", u64), ("exit", u64), ("cgroup", u64))


#: The program's settings: read-only globals (``const volatile``, in .rodata) that user
#: space sets by name before load, with their sizes in bytes.
SETTINGS = {"wakeup_bytes": 8, "parent_filter": 4, "exit_group_dead": 4}
#: The .bss word counting every failed ring buffer write (all CPUs, all kinds).
DROPPED = "dropped"


#: Structures declared here, by their C name (checked against the header).
STRUCTURES: dict[str, type[ctypes.Structure]] = {
    "po_event": po_event,
    "po_drops": po_drops,
}

#: Constants declared here, by their C name (checked against the header).
CONSTANTS: dict[str, int] = {
    name: value
    for name, value in globals().items()
    if name.startswith("PO_") and isinstance(value, int)
}

HEADER_SIZE = ctypes.sizeof(po_event)

#: po_event's fixed part in one unpack, little-endian as the kernel writes it on the
#: machines procobsrv runs on (x86-64, arm64).
HEADER = struct_for(po_event)

# -- the ring buffer's record header (<linux/bpf.h>) -------------------------------------
#: Bit 31 of a record's length word: the kernel is still writing the record.
BPF_RINGBUF_BUSY_BIT = 1 << 31
#: Bit 30: the producer discarded the record; skip it.
BPF_RINGBUF_DISCARD_BIT = 1 << 30
#: The length word and the kernel's page offset before every record.
BPF_RINGBUF_HDR_SZ = 8

#: <linux/bpf.h>'s constants declared here (checked against that header).
RINGBUF_CONSTANTS: dict[str, int] = {
    name: value for name, value in globals().items() if name.startswith("BPF_RINGBUF_")
}
