"""The eBPF program's global variables, found by name in its BTF.

A section such as ``.rodata`` or ``.bss`` holds whatever globals the program declares, in
an order the compiler picks; the object's BTF describes it as a DATASEC whose entries name
each variable with its offset and size (libbpf fixes the offsets when it opens the object).
User space reads and writes globals through this table, never by assuming a layout.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass

from ..errors import MonitorError
from .libbpf import Libbpf, LibbpfError

u32 = ctypes.c_uint32
#: <linux/btf.h>: kinds of types, in bits 24-28 of btf_type.info (the vlen in bits 0-15).
BTF_KIND_PTR = 2
BTF_KIND_TYPEDEF = 8
BTF_KIND_FUNC_PROTO = 13
BTF_KIND_DATASEC = 15


class btf_type(ctypes.Structure):
    """<linux/btf.h>'s struct btf_type (its size/type union as one u32)."""

    _fields_ = (("name_off", u32), ("info", u32), ("size_or_type", u32))


class btf_var_secinfo(ctypes.Structure):
    """One variable of a DATASEC, after the btf_type: its VAR's id, offset and size."""

    _fields_ = (("type", u32), ("offset", u32), ("size", u32))


@dataclass(frozen=True)
class Variable:
    name: str
    offset: int
    size: int

    def write(self, image: bytearray, value: int) -> None:
        """Store ``value`` in the section's bytes, as the machine's integer of this size."""
        image[self.offset : self.offset + self.size] = value.to_bytes(self.size, sys.byteorder)


def section_variables(lib: Libbpf, obj: int, section: str) -> dict[str, Variable]:
    """Name -> Variable of every global the opened object keeps in ``section``."""
    try:
        btf = lib.bpf_object__btf(obj)
        sec_id = lib.btf__find_by_name_kind(btf, section.encode(), BTF_KIND_DATASEC)
        sec = lib.btf__type_by_id(btf, sec_id)
    except LibbpfError as exc:
        raise MonitorError(f"the eBPF object describes no {section} section: {exc}") from exc
    count = btf_type.from_address(sec).info & 0xFFFF
    entries = (btf_var_secinfo * count).from_address(sec + ctypes.sizeof(btf_type))
    found = {}
    for entry in entries:
        var = btf_type.from_address(lib.btf__type_by_id(btf, entry.type))
        name = lib.btf__name_by_offset(btf, var.name_off).decode()
        found[name] = Variable(name, entry.offset, entry.size)
    return found


def _kind(t: btf_type) -> int:
    return int(t.info >> 24) & 0x1F


def tracepoint_arguments(lib: Libbpf, name: str) -> int | None:
    """How many arguments the running kernel passes to tracepoint ``name`` (its
    ``btf_trace_NAME`` typedef in /sys/kernel/btf/vmlinux), or None when it says nothing."""
    try:
        vmlinux = lib.btf__load_vmlinux_btf()
    except LibbpfError:
        return None
    try:
        tid = lib.btf__find_by_name_kind(vmlinux, f"btf_trace_{name}".encode(), BTF_KIND_TYPEDEF)
        t = btf_type.from_address(lib.btf__type_by_id(vmlinux, tid))
        for kind in (BTF_KIND_TYPEDEF, BTF_KIND_PTR):
            if _kind(t) != kind:
                return None
            t = btf_type.from_address(lib.btf__type_by_id(vmlinux, t.size_or_type))
        if _kind(t) != BTF_KIND_FUNC_PROTO:
            return None
        return int(t.info & 0xFFFF) - 1  # the first parameter is the probe's own (void *)
    except LibbpfError:
        return None
    finally:
        lib.btf__free(vmlinux)


def find(variables: dict[str, Variable], name: str, section: str, size: int) -> Variable:
    """The variable, checked to exist with the size user space expects."""
    var = variables.get(name)
    if var is None or var.size != size:
        raise MonitorError(
            f"the eBPF object has no {size}-byte {name} in {section}: it does not match "
            f"this procobsrv; reinstall it, or rebuild it with `make -C bpf`"
        )
    return var
