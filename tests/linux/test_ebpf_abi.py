"""The ctypes mirror (procobsrv.linux.ebpf_abi) against bpf/procobsrv.h, compiled.

``_Static_assert``s generated from the ctypes structures (size, alignment, every field's
offset and size, signedness) and the constants are compiled with the host's C compiler
against the header the kernel program includes. A deliberately wrong mirror must fail.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

from procobsrv.linux import ebpf_abi
from procobsrv.linux.ebpf_decoder import HEADER
from tests.fakes.availability import require_tool

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
HEADER_FILE = BPF_DIR / "procobsrv.h"


def asserts(
    structures: dict[str, type[ctypes.Structure]] = ebpf_abi.STRUCTURES,
    constants: dict[str, int] = ebpf_abi.CONSTANTS,
) -> str:
    lines = ["#include <stddef.h>", "#include <linux/types.h>", '#include "procobsrv.h"']

    def check(expr: str, what: str) -> None:
        lines.append(f'_Static_assert({expr}, "{what}");')

    for name, structure in structures.items():
        c = f"struct {name}"
        check(f"sizeof({c}) == {ctypes.sizeof(structure)}", f"sizeof {name}")
        check(f"_Alignof({c}) == {ctypes.alignment(structure)}", f"alignment of {name}")
        fields = [f for f, *_ in structure._fields_]
        for field, ctype, *_ in structure._fields_:
            descriptor = getattr(structure, field)
            member = f"(({c} *)0)->{field}"
            check(f"offsetof({c}, {field}) == {descriptor.offset}", f"{name}.{field} offset")
            check(f"sizeof({member}) == {descriptor.size}", f"{name}.{field} size")
            if hasattr(ctype, "_type_") and isinstance(ctype._type_, str):
                signed = ctype._type_ in "bhilq"
                check(f"((__typeof__({member}))-1 < 0) == {int(signed)}", f"{name}.{field} sign")
        check(
            f"{' + '.join(f'sizeof((({c} *)0)->{f})' for f in fields)} == sizeof({c})",
            f"{name} has no unmirrored field",
        )
    for name, value in constants.items():
        check(f"({name}) == {value:#x}ULL", f"{name} == {value:#x}")
    return "\n".join(lines) + "\n"


def compile_c(source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    cc = require_tool("gcc")
    path = tmp_path / "layout.c"
    path.write_text(source)
    return subprocess.run(
        [cc, "-std=gnu11", "-Wall", "-Werror", "-fsyntax-only", "-I", str(BPF_DIR), str(path)],
        capture_output=True,
        text=True,
    )


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
    assert HEADER.size == ctypes.sizeof(ebpf_abi.po_event)
    fields = [f for f, *_ in ebpf_abi.po_event._fields_]
    assert len(fields) == len(HEADER.unpack(bytes(HEADER.size)))
