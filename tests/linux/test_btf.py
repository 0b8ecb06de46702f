"""linux/btf.py: the program's globals found by name in its BTF, where the ELF file says they
are, and the kernel's tracepoint signature read from its own BTF."""

from __future__ import annotations

import ctypes
import re
import subprocess

import pytest

from procobsrv.errors import MonitorError
from procobsrv.linux import btf, libbpf
from procobsrv.linux.ebpf_abi import DROPPED, OBJECT_PATH, SETTINGS
from tests.fakes.availability import require_ebpf, require_tool


def elf_symbols() -> dict[str, tuple[int, int, int]]:
    """name -> (section index, offset, size) of the object's data symbols (readelf)."""
    out = subprocess.run(
        [require_tool("readelf"), "-sW", str(OBJECT_PATH)], capture_output=True, text=True
    ).stdout
    symbols = {}
    for m in re.finditer(
        r"^\s*\d+: ([0-9a-f]+)\s+(\d+) OBJECT\s+\w+\s+\w+\s+(\d+) (\S+)$", out, re.M
    ):
        symbols[m[4]] = (int(m[3]), int(m[1], 16), int(m[2]))
    return symbols


@pytest.fixture
def opened() -> tuple[libbpf.Libbpf, int]:
    require_ebpf()
    lib = libbpf.api()
    data = OBJECT_PATH.read_bytes()
    buf = ctypes.create_string_buffer(data, len(data))
    obj = lib.bpf_object__open_mem(buf, len(data), None)
    yield lib, obj
    lib.bpf_object__close(obj)


def test_globals_are_found_by_name_where_the_elf_symbols_put_them(
    opened: tuple[libbpf.Libbpf, int],
) -> None:
    lib, obj = opened
    symbols = elf_symbols()
    rodata = btf.section_variables(lib, obj, ".rodata")
    bss = btf.section_variables(lib, obj, ".bss")
    for name, size in SETTINGS.items():
        assert (
            (rodata[name].offset, rodata[name].size)
            == symbols[name][1:]
            == (
                symbols[name][1],
                size,
            )
        )
    assert (bss[DROPPED].offset, bss[DROPPED].size) == symbols[DROPPED][1:]
    # not all at offset 0: the layout is the compiler's, and only the names tell
    assert len({v.offset for v in rodata.values()}) == len(rodata) > 1


def test_a_missing_or_resized_global_names_the_mismatch(
    opened: tuple[libbpf.Libbpf, int],
) -> None:
    lib, obj = opened
    rodata = btf.section_variables(lib, obj, ".rodata")
    with pytest.raises(MonitorError, match=r"no 8-byte absent in \.rodata"):
        btf.find(rodata, "absent", ".rodata", 8)
    with pytest.raises(MonitorError, match="no 8-byte parent_filter"):
        btf.find(rodata, "parent_filter", ".rodata", 8)
    with pytest.raises(MonitorError, match=r"describes no \.nothing section"):
        btf.section_variables(lib, obj, ".nothing")


def test_tracepoint_arguments_are_the_kernels() -> None:
    require_ebpf()
    lib = libbpf.api()
    assert btf.tracepoint_arguments(lib, "sched_process_fork") == 2  # parent, child
    assert btf.tracepoint_arguments(lib, "sched_process_exec") == 3  # task, old_pid, bprm
    assert btf.tracepoint_arguments(lib, "no_such_tracepoint") is None
    dump = subprocess.run(
        [require_tool("bpftool"), "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"],
        capture_output=True,
        text=True,
    ).stdout
    (typedef,) = re.findall(r"\(\*btf_trace_sched_process_exit\)\((.*)\);", dump)
    assert btf.tracepoint_arguments(lib, "sched_process_exit") == typedef.count(",")
