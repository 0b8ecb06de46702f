"""layout.struct_for: one unpack reads each field of a ctypes structure where it lies."""

from __future__ import annotations

import ctypes

import pytest

from procobsrv.layout import struct_for


class Padded(ctypes.Structure):
    _fields_ = (
        ("small", ctypes.c_uint8),
        ("signed", ctypes.c_int32),  # after 3 bytes of padding
        ("name", ctypes.c_char * 5),
        ("wide", ctypes.c_uint64),  # after 3 more
        ("last", ctypes.c_int16),  # then 6 bytes of tail padding
    )


def test_fields_are_read_where_the_structure_puts_them_padding_skipped() -> None:
    unpacker = struct_for(Padded)
    assert unpacker.size == ctypes.sizeof(Padded) == 32
    record = Padded(small=200, signed=-5, name=b"abc", wide=2**63 + 1, last=-2)
    assert unpacker.unpack(bytes(record)) == (200, -5, b"abc\0\0", 2**63 + 1, -2)


def test_a_field_without_a_struct_code_is_refused() -> None:
    class WithPointer(ctypes.Structure):
        _fields_ = (("where", ctypes.c_void_p),)

    with pytest.raises(TypeError, match="where"):
        struct_for(WithPointer)
