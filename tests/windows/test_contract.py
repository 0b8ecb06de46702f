"""The ctypes mirror (procobsrv.windows.contract) against driver/ProcObsrv.h, compiled.

``_Static_assert``s are generated from the ctypes structures (size, alignment, every field's
offset and size), the integer constants, IOCTL codes and the function-like macros, and
compiled with ``x86_64-w64-mingw32-gcc -fsyntax-only`` (the driver's compiler) and with the
native gcc. The preprocessor's list of macros proves the mirror complete, and the UTF-16
names are compared from it. A deliberately wrong mirror must fail to compile.
"""

from __future__ import annotations

import ast
import ctypes
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from procobsrv.windows import contract
from tests.fakes import c_layout
from tests.fakes.availability import require_tool, unavailable
from tests.fakes.c_layout import layout_asserts

pytestmark = pytest.mark.winapi

HEADER = Path(__file__).resolve().parents[2] / "driver" / "ProcObsrv.h"
COMPILERS = {"mingw": "x86_64-w64-mingw32-gcc", "native": "gcc"}


def header() -> Path:
    if not HEADER.is_file():
        unavailable(f"{HEADER} is missing")
    return HEADER


def asserts(
    structures: dict[str, type[ctypes.Structure]] = contract.STRUCTURES,
    constants: dict[str, int] = contract.CONSTANTS,
) -> str:
    """C source: the header, then one _Static_assert per fact the mirror states."""
    extra = []
    for args in ((0x8022, 0x800, 0, 2), (0x8022, 0x803, 0, 1), (0xFFFF, 0xFFF, 3, 3)):
        value = contract.ctl_code(*args)
        extra.append((f"PROCOBSRV_CTL_CODE{args} == {value:#x}u", f"PROCOBSRV_CTL_CODE{args}"))
    for args in ((0, 0), (1, 0), (3, 5), (1024, 2048), (7, 1)):
        value = contract.record_size(*args)
        extra.append((f"PROCOBSRV_RECORD_SIZE{args} == {value}u", f"PROCOBSRV_RECORD_SIZE{args}"))
    return layout_asserts(["<stddef.h>", '"ProcObsrv.h"'], structures, constants, extra)


def compile_c(compiler: str, source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return c_layout.compile_c(
        COMPILERS[compiler], source, tmp_path, include_dirs=[header().parent], std="c11"
    )


@pytest.mark.parametrize("compiler", sorted(COMPILERS))
def test_mirror_compiles_against_header(compiler: str, tmp_path: Path) -> None:
    header()
    source = asserts()
    assert source.count("_Static_assert") > 100
    result = compile_c(compiler, source, tmp_path)
    assert result.returncode == 0, result.stderr


def header_macros(compiler: str = "mingw") -> dict[str, str]:
    """Every macro ProcObsrv.h defines: name (with its parameter list if any) -> value."""
    gcc = require_tool(COMPILERS[compiler])
    out = subprocess.run(
        [gcc, "-dM", "-E", "-x", "c", str(header())], capture_output=True, text=True, check=True
    ).stdout
    builtin = subprocess.run(
        [gcc, "-dM", "-E", "-x", "c", "/dev/null"], capture_output=True, text=True, check=True
    ).stdout
    macros = {}
    for line in set(out.splitlines()) - set(builtin.splitlines()):
        match = re.match(r"#define (\w+(?:\([^)]*\))?) ?(.*)", line)
        assert match, line
        macros[match.group(1)] = match.group(2)
    return {k: v for k, v in macros.items() if "PROCOBSRV" in k}


def test_mirror_is_complete() -> None:
    macros = header_macros()
    mirrored = set(contract.CONSTANTS) | set(contract.STRINGS) | set(contract.HELPER_MACROS)
    functions = {name.split("(")[0] for name in macros if "(" in name}
    assert functions - set(contract.HELPER_MACROS) == set(contract.FUNCTIONS)
    objects = {name for name in macros if "(" not in name}
    assert objects - mirrored == set(), "macros of ProcObsrv.h missing from contract.py"
    assert mirrored - objects - {"PROCOBSRV_STATIC_ASSERT", "PROCOBSRV_CHECK_OFFSET"} == set()
    text = header().read_text()
    structs = set(re.findall(r"typedef struct \w+ \{[^}]*\} (\w+);", text, re.S))
    assert structs == set(contract.STRUCTURES)


def test_names_match_header() -> None:
    macros = header_macros()
    for name, value in contract.STRINGS.items():
        literal = macros[name]
        assert literal.startswith('L"'), f"{name} is not a wide string: {literal}"
        assert ast.literal_eval(literal[1:]) == value, name


def test_record_struct_format_matches_mirror() -> None:
    """contract.RECORD_HEADER (device.py decodes with it) reads the fields of contract.Record."""
    assert (
        contract.RECORD_HEADER.size == ctypes.sizeof(contract.Record) == contract.RECORD_HEADER_SIZE
    )
    values = [(i + 1) * 0x0101 for i in range(len(contract.Record._fields_))]
    record = contract.Record(*values)
    assert list(contract.RECORD_HEADER.unpack(bytes(record))) == values


#: The access each request needs from the caller's handle (CTL_CODE bits 14-15): whatever
#: changes the driver's state, and GET_EVENTS, which removes records, needs FILE_WRITE_DATA.
REQUIRED_ACCESS = {
    "IOCTL_PROCOBSRV_ACTIVATE": contract.FILE_WRITE_DATA,
    "IOCTL_PROCOBSRV_DEACTIVATE": contract.FILE_WRITE_DATA,
    "IOCTL_PROCOBSRV_GET_EVENTS": contract.FILE_WRITE_DATA,
    "IOCTL_PROCOBSRV_GET_STATS": contract.FILE_READ_DATA,
    "IOCTL_PROCOBSRV_INJECT": contract.FILE_WRITE_DATA,
}


def test_ioctl_access_bits() -> None:
    """Issue 13 item 17: GET_EVENTS (it consumes records) needed only read access."""
    ioctls = {name for name in contract.CONSTANTS if name.startswith("IOCTL_")}
    assert ioctls == set(REQUIRED_ACCESS)
    for name, access in REQUIRED_ACCESS.items():
        code = contract.CONSTANTS[name]
        assert (code >> 14) & 3 == access, f"{name} {code:#x}"
        assert (code >> 16, code & 3) == (contract.DEVICE_TYPE, contract.METHOD_BUFFERED)
    # test_mirror_compiles_against_header proves the header has the same codes.


# --- The check can fail ------------------------------------------------------------------------
def _swap_fields() -> dict[str, type[ctypes.Structure]]:
    class Record(ctypes.Structure):  # pid and parent_pid swapped
        _fields_ = tuple(
            {"pid": ("parent_pid", ctypes.c_uint32), "parent_pid": ("pid", ctypes.c_uint32)}.get(
                f[0], f
            )
            for f in contract.Record._fields_
        )

    return {**contract.STRUCTURES, "PROCOBSRV_RECORD": Record}


def _narrow_field() -> dict[str, type[ctypes.Structure]]:
    class Stats(ctypes.Structure):  # dropped as 32 bits, padded back to the right size
        _fields_ = (
            *contract.Stats._fields_[:-1],
            ("dropped", ctypes.c_uint32),
            ("pad", ctypes.c_uint32),
        )

    return {**contract.STRUCTURES, "PROCOBSRV_STATS": Stats}


def _signed_field() -> dict[str, type[ctypes.Structure]]:
    class Activate(ctypes.Structure):
        _fields_ = (("size", ctypes.c_int32), *contract.ActivateInput._fields_[1:])

    return {**contract.STRUCTURES, "PROCOBSRV_ACTIVATE_INPUT": Activate}


BROKEN: dict[str, Callable[[], tuple[dict[str, type[ctypes.Structure]], dict[str, int]]]] = {
    "swapped fields": lambda: (_swap_fields(), contract.CONSTANTS),
    "narrow field": lambda: (_narrow_field(), contract.CONSTANTS),
    "signed field": lambda: (_signed_field(), contract.CONSTANTS),
    "wrong ioctl": lambda: (
        contract.STRUCTURES,
        {**contract.CONSTANTS, "IOCTL_PROCOBSRV_GET_EVENTS": 0x80222008},  # FILE_ANY_ACCESS
    ),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_wrong_mirror_fails_to_compile(broken: str, tmp_path: Path) -> None:
    header()
    structures, constants = BROKEN[broken]()
    result = compile_c("mingw", asserts(structures, constants), tmp_path)
    assert result.returncode != 0, f"{broken} compiled"
    assert "static assertion failed" in result.stderr
