"""The ctypes mirror (procobsrv.linux.ebpf_abi) against bpf/procobsrv.h and <linux/bpf.h>.

``_Static_assert``s generated from the ctypes structures (size, alignment, every field's
offset and size, signedness) and the constants are compiled with the host's C compiler
against the header the kernel program includes, and the ring buffer's constants against
the kernel's own header. A deliberately wrong mirror must fail.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

from procobsrv.linux import ebpf_abi
from tests.fakes import c_layout
from tests.fakes.c_layout import layout_asserts

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
HEADER_FILE = BPF_DIR / "procobsrv.h"


def asserts(
    structures: dict[str, type[ctypes.Structure]] = ebpf_abi.STRUCTURES,
    constants: dict[str, int] = ebpf_abi.CONSTANTS,
) -> str:
    return layout_asserts(
        ["<stddef.h>", "<linux/types.h>", '"procobsrv.h"'],
        {f"struct {name}": structure for name, structure in structures.items()},
        constants,
    )


def compile_c(source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return c_layout.compile_c("gcc", source, tmp_path, include_dirs=[BPF_DIR])


def test_mirror_compiles_against_header(tmp_path: Path) -> None:
    source = asserts()
    assert source.count("_Static_assert") > 60
    result = compile_c(source, tmp_path)
    assert result.returncode == 0, result.stderr


def test_wrong_mirror_fails_to_compile(tmp_path: Path) -> None:
    class po_drops(ctypes.Structure):
        _fields_ = (("fork", ctypes.c_uint64), ("exec", ctypes.c_uint32))

    result = compile_c(asserts({"po_drops": po_drops}, {"PO_ARGS_CAP": 4095}), tmp_path)
    assert result.returncode != 0
    assert "po_drops.exec size" in result.stderr and "PO_ARGS_CAP" in result.stderr


def test_mirror_is_complete() -> None:
    text = HEADER_FILE.read_text()
    macros = set(re.findall(r"^#define (PO_\w+) ", text, re.M))
    enums = set(re.findall(r"^\s*(PO_\w+) = ", text, re.M))
    assert macros | enums == set(ebpf_abi.CONSTANTS)
    structs = set(re.findall(r"^struct (\w+) \{", text, re.M))
    assert structs == set(ebpf_abi.STRUCTURES)


def test_decoder_header_format_matches_the_structure() -> None:
    """The one unpack of a record reads each field where the structure puts it."""
    header = ebpf_abi.HEADER
    assert header.size == ctypes.sizeof(ebpf_abi.po_event)
    record = ebpf_abi.po_event()
    expected: list[int | bytes] = []
    for i, (name, *_) in enumerate(ebpf_abi.po_event._fields_):  # each field its own value
        value: int | bytes = b"comm".ljust(16, b"\0") if name == "comm" else i + 1
        setattr(record, name, value)
        expected.append(value)
    assert header.unpack(bytes(record)) == tuple(expected)


def test_ring_buffer_constants_are_the_kernels(tmp_path: Path) -> None:
    source = layout_asserts(["<linux/bpf.h>"], {}, ebpf_abi.RINGBUF_CONSTANTS)
    assert source.count("_Static_assert") == 3
    assert compile_c(source, tmp_path).returncode == 0
    wrong = {**ebpf_abi.RINGBUF_CONSTANTS, "BPF_RINGBUF_HDR_SZ": 16}
    assert compile_c(layout_asserts(["<linux/bpf.h>"], {}, wrong), tmp_path).returncode != 0
