"""The one generator of the "ctypes mirror against a C header" checks.

Each kernel or driver interface is described once on the Python side as ctypes structures
and integer constants (``linux/connector_abi.py``, ``linux/ebpf_abi.py``,
``windows/contract.py``). :func:`layout_asserts` turns such a description into C source,
one ``_Static_assert`` per fact it states, and :func:`compile_c` compiles it against the
real header with ``-fsyntax-only``: the build fails on the first fact the header denies.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tests.fakes.availability import require_tool

Mirror = type[ctypes.Structure] | type[ctypes.Union]
#: ctypes' codes of the integer types, and of the signed ones among them.
_INTEGER_CODES = "bBhHiIlLqQnN"
_SIGNED_CODES = "bhilqn"


def _label(c_type: str, mirror: Mirror) -> str:
    """How a failed assert names the type: its C name, or the mirror's for an expression."""
    if re.fullmatch(r"((struct|union) )?\w+", c_type):
        return c_type.split()[-1]
    return mirror.__name__


def layout_asserts(
    includes: Sequence[str],
    structures: Mapping[str, Mirror],
    constants: Mapping[str, int],
    extra: Iterable[tuple[str, str]] = (),
) -> str:
    """C source: the ``includes``, then the asserts.

    ``structures`` maps a C type (``struct po_event``, a typedef name, or an expression such
    as ``__typeof__(((struct proc_event *)0)->event_data)`` for an anonymous member) to its
    mirror: its size and alignment, every field's offset, size and signedness are checked,
    and, for a structure without padding, that the mirrored fields add up to its size (none
    is missing).
    ``constants`` maps a C constant to its value; ``extra`` adds (expression, message) pairs.
    """
    lines = [f"#include {include}" for include in includes]

    def check(expr: str, what: str) -> None:
        lines.append(f'_Static_assert({expr}, "{what}");')

    for c_type, mirror in structures.items():
        name = _label(c_type, mirror)
        check(f"sizeof({c_type}) == {ctypes.sizeof(mirror)}", f"sizeof {name}")
        check(f"_Alignof({c_type}) == {ctypes.alignment(mirror)}", f"alignment of {name}")
        fields = [field for field, *_ in mirror._fields_]
        for field, ctype, *_ in mirror._fields_:
            descriptor = getattr(mirror, field)
            member = f"(({c_type} *)0)->{field}"
            check(f"offsetof({c_type}, {field}) == {descriptor.offset}", f"{name}.{field} offset")
            check(f"sizeof({member}) == {descriptor.size}", f"{name}.{field} size")
            code = getattr(ctype, "_type_", None)
            if isinstance(code, str) and code in _INTEGER_CODES:  # not a pointer/struct/array
                signed = code in _SIGNED_CODES
                check(f"((__typeof__({member}))-1 < 0) == {int(signed)}", f"{name}.{field} sign")
        mirrored = sum(getattr(mirror, field).size for field in fields)
        # A union's members overlap, and a padded structure (struct msghdr's alignment gaps)
        # has bytes no field covers: for those, sizes and offsets are all there is to check.
        if issubclass(mirror, ctypes.Structure) and mirrored == ctypes.sizeof(mirror):
            total = " + ".join(f"sizeof((({c_type} *)0)->{field})" for field in fields)
            check(f"{total} == sizeof({c_type})", f"{name} has no unmirrored field")
    for name, value in constants.items():
        check(f"({name}) == {value:#x}ULL", f"{name} == {value:#x}")
    for expr, what in extra:
        check(expr, what)
    return "\n".join(lines) + "\n"


def compile_c(
    compiler: str,
    source: str,
    tmp_path: Path,
    *,
    include_dirs: Sequence[Path] = (),
    defines: Sequence[str] = (),
    std: str = "gnu11",
) -> subprocess.CompletedProcess[str]:
    """``compiler -fsyntax-only`` on ``source`` (skips the test if the compiler is missing)."""
    cc = require_tool(compiler)
    path = tmp_path / f"layout_{Path(compiler).name}.c"
    path.write_text(source)
    includes = [arg for directory in include_dirs for arg in ("-I", str(directory))]
    includes += [f"-D{define}" for define in defines]
    return subprocess.run(
        [cc, f"-std={std}", "-Wall", "-Werror", "-fsyntax-only", *includes, str(path)],
        capture_output=True,
        text=True,
    )
