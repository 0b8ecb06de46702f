"""A ctypes structure as one ``struct.Struct``: how the sources read a kernel's or a
driver's fixed-size records in one unpack, with a format made from the structure that
describes them (``linux/ebpf_abi.py``, ``windows/contract.py``), never written by hand.
"""

from __future__ import annotations

import ctypes
import struct

#: ctypes' codes of the integer types, and struct's fixed-size code for each width.
_INTEGER_CODES = "bBhHiIlLqQ"
_SIGNED = {1: "b", 2: "h", 4: "i", 8: "q"}
_UNSIGNED = {1: "B", 2: "H", 4: "I", 8: "Q"}


def struct_for(structure: type[ctypes.Structure], byte_order: str = "<") -> struct.Struct:
    """Reads ``structure``'s fields in order (integers as ints, ``c_char`` arrays as bytes),
    skipping its padding; ``byte_order`` is struct's (``<``: little-endian, no alignment)."""
    parts, at = [byte_order], 0
    for name, ctype, *_ in structure._fields_:
        field = getattr(structure, name)
        if field.offset > at:
            parts.append(f"{field.offset - at}x")
        parts.append(_code(name, ctype, field.size))
        at = field.offset + field.size
    if ctypes.sizeof(structure) > at:
        parts.append(f"{ctypes.sizeof(structure) - at}x")
    unpacker = struct.Struct("".join(parts))
    assert unpacker.size == ctypes.sizeof(structure)
    return unpacker


def _code(name: str, ctype: type[ctypes._CData], size: int) -> str:
    code = getattr(ctype, "_type_", None)
    if isinstance(code, str) and code in _INTEGER_CODES:
        return (_SIGNED if code.islower() else _UNSIGNED)[size]
    if issubclass(ctype, ctypes.Array) and code is ctypes.c_char:
        return f"{size}s"
    raise TypeError(f"field {name}: {ctype.__name__} has no struct code here")
