"""The ctypes bindings against the real prototypes: mingw-w64's headers, parsed by libclang.

For every declared binding: the function exists in the headers and in its DLL's import
library, has as many arguments, each argument has the prototype's name, and each argument and
the result has the same size and kind (pointer / signed / unsigned integer) as the C
prototype; string and struct pointers point to 2-byte WCHARs and structs of the same size.
The structures and constants winapi declares are checked too (libclang for layouts,
``_Static_assert``s compiled by mingw gcc for values). The
last tests show that a corrupted declaration is caught.
"""

from __future__ import annotations

import ast
import ctypes
import dataclasses
import functools
import gc
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from procobsrv.windows import winapi
from procobsrv.windows.winapi import BINDINGS, Binding, Check
from tests.fakes import c_layout
from tests.fakes.availability import require_tool, unavailable
from tests.fakes.c_layout import layout_asserts

pytestmark = pytest.mark.winapi

PACKAGE = Path(winapi.__file__).resolve().parents[1]  # src/procobsrv
MINGW_INCLUDE = Path("/usr/x86_64-w64-mingw32/include")
MINGW_LIB = Path("/usr/x86_64-w64-mingw32/lib")
HEADERS = ("windows.h", "winsvc.h", "winioctl.h", "realtimeapiset.h")


@dataclass(frozen=True)
class CType:
    """What the ABI cares about in one C type (or ctypes type)."""

    kind: str  # "ptr", "int" (signed), "uint", "void"
    size: int
    pointee: str | None = None  # for pointers: "wchar", "struct:<size>", "u32", "ptr", None


def translation_unit(tmp: str) -> Any:
    try:
        import clang.cindex as ci
    except ImportError:
        unavailable("libclang is not installed (pip install libclang)")
    if not MINGW_INCLUDE.is_dir():
        unavailable("mingw-w64 headers are not installed (scripts/setup-system installs them)")
    stubs = Path(tmp)
    for name in ("x86intrin.h", "emmintrin.h", "mm_malloc.h"):
        (stubs / name).write_text("")
    source = "".join(f"#include <{h}>\n" for h in HEADERS)
    tu = ci.Index.create().parse(
        "bindings.c",
        args=[
            "-target",
            "x86_64-w64-mingw32",
            "-nostdinc",
            "-isystem",
            str(stubs),
            "-isystem",
            str(MINGW_INCLUDE),
        ],
        unsaved_files=[("bindings.c", source)],
    )
    errors = [str(d) for d in tu.diagnostics if d.severity >= ci.Diagnostic.Error]
    assert not errors, errors
    return tu


@pytest.fixture(scope="module")
def headers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Function and struct declarations of the mingw-w64 headers, by name."""
    tu = translation_unit(str(tmp_path_factory.mktemp("stubs")))
    import clang.cindex as ci

    decls: dict[str, Any] = {}
    for cursor in tu.cursor.get_children():
        if cursor.kind == ci.CursorKind.FUNCTION_DECL:
            decls.setdefault(cursor.spelling, cursor)
        elif cursor.kind == ci.CursorKind.TYPEDEF_DECL:
            decls.setdefault("typedef " + cursor.spelling, cursor)
    yield decls
    decls.clear()  # free libclang's objects while the library is still loaded
    del tu, cursor
    gc.collect()


def c_type(t: Any) -> CType:
    import clang.cindex as ci

    t = t.get_canonical()
    k = ci.TypeKind
    if t.kind == k.VOID:
        return CType("void", 0)
    if t.kind == k.POINTER:
        p = t.get_pointee().get_canonical()
        if p.kind in (k.USHORT, k.WCHAR) and p.get_size() == 2:
            pointee: str | None = "wchar"
        elif p.kind == k.RECORD:
            pointee = f"struct:{p.get_size()}"
        elif p.kind == k.POINTER:
            pointee = "ptr"
        elif p.kind in (k.ULONG, k.UINT) and p.get_size() == 4:
            pointee = "u32"
        elif p.kind in (k.ULONGLONG, k.ULONG) and p.get_size() == 8:
            pointee = "u64"
        else:
            pointee = None
        return CType("ptr", t.get_size(), pointee)
    unsigned = {k.UCHAR, k.USHORT, k.UINT, k.ULONG, k.ULONGLONG, k.CHAR_U, k.BOOL}
    signed = {k.SCHAR, k.SHORT, k.INT, k.LONG, k.LONGLONG, k.CHAR_S}
    if t.kind in unsigned:
        return CType("uint", t.get_size())
    if t.kind in signed:
        return CType("int", t.get_size())
    raise AssertionError(f"unexpected C type {t.spelling} ({t.kind})")


def py_type(t: Any) -> CType:
    """The same description for a ctypes type."""
    if t is None:
        return CType("void", 0)
    if t is ctypes.c_wchar_p:
        return CType("ptr", ctypes.sizeof(t), "wchar")
    if t is ctypes.c_char_p:
        return CType("ptr", ctypes.sizeof(t), "char")
    if t is ctypes.c_void_p:
        return CType("ptr", ctypes.sizeof(t), None)
    if isinstance(t, type(ctypes.POINTER(ctypes.c_int))):  # a POINTER(...) type
        target = t._type_
        if issubclass(target, ctypes.Structure):
            pointee: str | None = f"struct:{ctypes.sizeof(target)}"
        elif target is ctypes.c_void_p:
            pointee = "ptr"
        elif target is ctypes.c_uint32:
            pointee = "u32"
        elif target is ctypes.c_uint64:
            pointee = "u64"
        else:
            raise AssertionError(f"unexpected pointer target {target}")
        return CType("ptr", ctypes.sizeof(t), pointee)
    assert issubclass(t, ctypes._SimpleCData), t  # an integer type; never dereference t(-1)
    assert t._type_ in "bBhHiIlLqQ", f"{t} is not an integer type"
    signed = t._type_ in "bhilq"
    return CType("int" if signed else "uint", ctypes.sizeof(t))


def compatible(declared: CType, real: CType) -> bool:
    if (declared.kind, declared.size) != (real.kind, real.size):
        return False
    # c_void_p stands for any pointer; typed pointers must match what they point to.
    return declared.pointee is None or declared.pointee == real.pointee


@functools.cache
def dll_exports(dll: str) -> frozenset[str]:
    """The functions ``dll`` exports, from its mingw-w64 import library.

    API sets (``api-ms-win-...``) have no library of their own: their import stubs are
    members of libmincore.a named after the API set.
    """
    nm = require_tool("x86_64-w64-mingw32-nm")
    api_set = dll.startswith("api-ms-win-")
    library = MINGW_LIB / ("libmincore.a" if api_set else f"lib{dll}.a")
    if not library.is_file():
        unavailable(f"{library} is missing (mingw-w64 is not installed)")
    out = subprocess.run(
        [nm, "-A", str(library)], capture_output=True, text=True, check=True
    ).stdout
    exports = set()
    for line in out.splitlines():
        symbol = line.rsplit(" ", 1)[-1]
        member = line.split(":")[1] if line.count(":") >= 2 else ""
        if symbol.startswith("__imp_") and (not api_set or member.startswith(f"lib{dll}s")):
            exports.add(symbol[len("__imp_") :])
    return frozenset(exports)


def mismatches(binding: Binding, headers: dict[str, Any]) -> list[str]:
    """Everything in which ``binding`` disagrees with the C prototype (empty when it agrees)."""
    decl = headers.get(binding.name)
    if decl is None:
        return [f"{binding.name}: not declared in {', '.join(HEADERS)}"]
    problems = []
    if binding.name not in dll_exports(binding.dll):
        problems.append(f"{binding.name}: not exported by {binding.dll}.dll")
    args = list(decl.get_arguments())
    if len(args) != len(binding.argtypes):
        problems.append(
            f"{binding.name}: {len(binding.argtypes)} arguments declared, prototype has {len(args)}"
        )
    for i, (arg, (name, declared)) in enumerate(zip(args, binding.args, strict=False)):
        if name != arg.spelling:
            problems.append(
                f"{binding.name}: argument {i} is named {name!r}, prototype {arg.spelling!r}"
            )
        real, mine = c_type(arg.type), py_type(declared)
        if not compatible(mine, real):
            problems.append(
                f"{binding.name}: argument {i} ({arg.spelling}: {arg.type.spelling}) is {real}, "
                f"declared {mine}"
            )
    real, mine = c_type(decl.result_type), py_type(binding.restype)
    if not compatible(mine, real):
        problems.append(f"{binding.name}: result ({decl.result_type.spelling}) is {real}, {mine}")
    expected_check = {
        "ptr": {Check.ZERO, Check.INVALID_HANDLE},
        "int": {Check.ZERO},
        "uint": {Check.WAIT_FAILED, Check.ZERO},
        "void": {Check.NEVER},
    }.get(real.kind, set())
    if binding.check not in expected_check:
        problems.append(f"{binding.name}: error rule {binding.check} for a {real.kind} result")
    return problems


@pytest.mark.parametrize("binding", BINDINGS, ids=[b.name for b in BINDINGS])
def test_binding_matches_prototype(binding: Binding, headers: dict[str, Any]) -> None:
    assert mismatches(binding, headers) == []


def called_win32_functions() -> set[str]:
    """The names the package calls on a WinApi: ``api.Name(...)`` / ``self._api.Name(...)``."""
    called = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            target = node.func.value
            if (isinstance(target, ast.Name) and target.id == "api") or (
                isinstance(target, ast.Attribute) and target.attr == "_api"
            ):
                called.add(node.func.attr)
    return called


def test_every_binding_is_checked() -> None:
    names = [b.name for b in BINDINGS]
    assert len(names) == len(set(names)), "a function is declared twice"
    # Every function the package calls is in the table (so the prototype test checks it),
    # and the table holds nothing the package does not call.
    called = called_win32_functions()
    assert len(called) > 20  # the scan sees the calls (today 24)
    assert called == set(names)
    # WinApi exposes exactly the table (its typed attributes are what the package calls).
    assert set(winapi.WinApi.__annotations__) == set(names)


@pytest.mark.parametrize("name", sorted(winapi.STRUCTURES))
def test_structure_layout_matches_header(name: str, headers: dict[str, Any]) -> None:
    structure = winapi.STRUCTURES[name]
    record = headers["typedef " + name].underlying_typedef_type.get_canonical()
    assert ctypes.sizeof(structure) == record.get_size()
    assert ctypes.alignment(structure) == record.get_align()
    c_fields = [
        (f.spelling, f.get_field_offsetof() // 8, f.type.get_size()) for f in record.get_fields()
    ]
    py_fields = [
        (n, getattr(structure, n).offset, getattr(structure, n).size) for n, _ in structure._fields_
    ]
    assert py_fields == c_fields


#: What the mingw-w64 compile of winapi's structures and constants includes.
WIN32_INCLUDES = ("<stddef.h>", "<windows.h>", "<winsvc.h>", "<winioctl.h>")


def compile_mingw(source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return c_layout.compile_c("x86_64-w64-mingw32-gcc", source, tmp_path)


def test_constants_match_headers(tmp_path: Path) -> None:
    consts = winapi.constants()
    assert len(consts) > 40
    checked = {
        name: value
        for name, value in sorted(consts.items())
        if name not in winapi.NOT_IN_MINGW_HEADERS
    }
    result = compile_mingw(layout_asserts(WIN32_INCLUDES, {}, checked), tmp_path)
    assert result.returncode == 0, result.stderr


def test_structures_compile_against_headers(tmp_path: Path) -> None:
    """The structures' layout again, as ``_Static_assert``s compiled by the mingw-w64 gcc."""
    source = layout_asserts(WIN32_INCLUDES, winapi.STRUCTURES, {})
    assert source.count("_Static_assert") > 3 * len(winapi.STRUCTURES)
    result = compile_mingw(source, tmp_path)
    assert result.returncode == 0, result.stderr


def test_structure_compile_check_can_fail(tmp_path: Path) -> None:
    class SERVICE_STATUS(ctypes.Structure):  # two fields swapped: same size, other names
        _fields_ = (
            winapi.SERVICE_STATUS._fields_[1],
            winapi.SERVICE_STATUS._fields_[0],
            *winapi.SERVICE_STATUS._fields_[2:],
        )

    source = layout_asserts(WIN32_INCLUDES, {"SERVICE_STATUS": SERVICE_STATUS}, {})
    result = compile_mingw(source, tmp_path)
    assert result.returncode != 0
    assert "SERVICE_STATUS.dwServiceType offset" in result.stderr


# --- The check can fail ------------------------------------------------------------------------
def _by_name(name: str) -> Binding:
    return next(b for b in BINDINGS if b.name == name)


CORRUPTIONS = {
    "argument too wide": lambda b: dataclasses.replace(
        b, args=(b.args[0], (b.argnames[1], ctypes.c_uint64))
    ),  # WaitForSingleObject(HANDLE, DWORD) declared with a 64-bit timeout
    "argument missing": lambda b: dataclasses.replace(b, args=b.args[:1]),
    "argument renamed": lambda b: dataclasses.replace(
        b, args=(b.args[0], ("dwTimeout", b.argtypes[1]))
    ),
    "result too narrow": lambda b: dataclasses.replace(b, restype=ctypes.c_uint16),
    "signedness": lambda b: dataclasses.replace(b, restype=ctypes.c_int32),
    "integer for pointer": lambda b: dataclasses.replace(
        b, args=((b.argnames[0], ctypes.c_uint64), b.args[1])
    ),
    "wrong dll": lambda b: dataclasses.replace(b, dll="advapi32"),
    "wrong error rule": lambda b: dataclasses.replace(b, check=Check.INVALID_HANDLE),
    "unknown function": lambda b: dataclasses.replace(b, name="WaitForSingleObjectExW"),
}


def test_wrong_api_set_is_caught(headers: dict[str, Any]) -> None:
    good = _by_name("QueryInterruptTime")
    assert mismatches(good, headers) == []
    older = dataclasses.replace(good, dll="api-ms-win-core-realtime-l1-1-0")  # not in it
    assert mismatches(older, headers) == [f"QueryInterruptTime: not exported by {older.dll}.dll"]


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupted_declaration_is_caught(corruption: str, headers: dict[str, Any]) -> None:
    good = _by_name("WaitForSingleObject")
    assert mismatches(good, headers) == []
    bad = CORRUPTIONS[corruption](good)
    assert mismatches(bad, headers), f"{corruption} went unnoticed"


def test_corrupted_argument_name_is_caught(headers: dict[str, Any]) -> None:
    """Two arguments of one type swapped in the table: the types agree, the names do not."""
    good = _by_name("CreateEventW")
    assert mismatches(good, headers) == []
    attributes, manual_reset, initial_state, name = good.args
    swapped = dataclasses.replace(good, args=(attributes, initial_state, manual_reset, name))
    assert mismatches(swapped, headers) == [
        "CreateEventW: argument 1 is named 'bInitialState', prototype 'bManualReset'",
        "CreateEventW: argument 2 is named 'bManualReset', prototype 'bInitialState'",
    ]


def test_corrupted_typed_pointer_is_caught(headers: dict[str, Any]) -> None:
    good = _by_name("QueryServiceStatus")
    wrong_struct = ctypes.POINTER(winapi.QUERY_SERVICE_CONFIGW)  # not SERVICE_STATUS
    bad = dataclasses.replace(good, args=(good.args[0], (good.argnames[1], wrong_struct)))
    assert mismatches(bad, headers)
    bad_string = dataclasses.replace(_by_name("OpenEventW"))
    assert mismatches(bad_string, headers) == []
    narrow = dataclasses.replace(
        bad_string, args=(*bad_string.args[:2], (bad_string.argnames[2], ctypes.c_char_p))
    )
    assert mismatches(narrow, headers), "a char* for a WCHAR* went unnoticed"


def test_corrupted_structure_is_caught(headers: dict[str, Any]) -> None:
    class SERVICE_STATUS(ctypes.Structure):  # a field forgotten
        _fields_ = winapi.SERVICE_STATUS._fields_[:-1]

    record = headers["typedef SERVICE_STATUS"].underlying_typedef_type.get_canonical()
    assert ctypes.sizeof(SERVICE_STATUS) != record.get_size()
