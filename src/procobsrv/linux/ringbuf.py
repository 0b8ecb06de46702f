"""Consuming a BPF ring buffer from Python: the two mappings, the positions, the records.

The kernel's layout (``kernel/bpf/ringbuf.c``): at offset 0 of the map's fd, one read-write
page whose first u64 is ``consumer_pos``; at offset one page, read-only, a page whose first
u64 is ``producer_pos``, then the data area mapped twice in a row, so that any run of
records is contiguous. Each record: a u32 length (bit 31: still being written; bit 30:
discarded), a u32 the kernel uses, the sample, padded to 8 bytes.

Memory ordering. The kernel publishes with release stores (a record's length word, then
producer_pos) and expects the consumer to load them with acquire and to store consumer_pos
with release. Python has no fences: :class:`RingReader` reads the positions as single
aligned 8-byte loads and stores (ctypes ``c_uint64``), which is correct only where every
load is an acquire and every store a release, as on x86-64 (TSO). On other machines (arm64
reorders loads; a 32-bit Python on an x86-64 kernel, which splits 8-byte loads)
:func:`open_reader` gives :class:`LibbpfRingReader` instead, which lets
libbpf's ``ring_buffer__consume`` (C, with ``smp_load_acquire``/``smp_store_release``) walk
the records and hands each to a ctypes callback. It costs about 0.45 us more per record here
(docs/ebpf.md), so x86-64 keeps the mmap reader.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import struct
from typing import Protocol

from ..errors import MonitorError
from . import libc
from .ebpf_abi import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ
from .libbpf import SAMPLE_FN, Libbpf

#: Machines whose aligned 8-byte loads and stores are atomic and order as acquire and
#: release (TSO): the mmap reader. (32-bit x86 splits them in two.)
TSO_MACHINES = frozenset({"x86_64", "amd64"})

#: This Python's pointer size in bytes: 8 for 64-bit code, whose 8-byte loads are single.
POINTER_BYTES = struct.calcsize("P")

#: Records are padded to 8 bytes (kernel/bpf/ringbuf.c).
_PAD = 7


def map_shared(length: int, prot: int, fd: int, offset: int) -> int:
    addr = libc.mmap(None, length, prot, mmap.MAP_SHARED, fd, offset)
    if addr is None or addr == libc.MAP_FAILED:
        err = ctypes.get_errno()
        raise MonitorError(f"mapping the eBPF program's memory failed: {os.strerror(err)}")
    return int(addr)


def unmap(addr: int, length: int) -> None:
    libc.munmap(addr, length)


class Reader(Protocol):
    def read(self, limit: int, spans: list[tuple[int, int]]) -> bytes:
        """Copy out the committed records (at most about ``limit`` bytes) and consume them.

        Returns the copied bytes; ``spans`` gets (offset, length) of each sample in them.
        """

    def close(self) -> None: ...


def reads_by_mmap(machine: str, pointer_bytes: int) -> bool:
    """Whether the mmap reader is correct: x86-64 code, that is an x86-64 kernel
    (``platform.machine()``) *and* a 64-bit Python (a 32-bit one on that kernel runs i386
    code, which splits 8-byte loads)."""
    return machine in TSO_MACHINES and pointer_bytes == 8


def open_reader(lib: Libbpf, fd: int, size: int) -> Reader:
    """The reader that is correct on this machine (see the module's docstring)."""
    if reads_by_mmap(platform.machine(), POINTER_BYTES):
        return RingReader(fd, size)
    return LibbpfRingReader(lib, fd)


class RingReader:
    """Reads whole records from a BPF_MAP_TYPE_RINGBUF map fd of ``size`` bytes by mmap
    (x86-64 only: see the module's docstring)."""

    def __init__(self, fd: int, size: int) -> None:
        if size <= 0 or size & (size - 1) or size % mmap.PAGESIZE:
            raise ValueError(f"ring buffer size {size} is not a power-of-2 multiple of a page")
        self.size = size
        self._mask = size - 1
        page = mmap.PAGESIZE
        self._spans: list[tuple[int, int]] = []
        cons = map_shared(page, mmap.PROT_READ | mmap.PROT_WRITE, fd, 0)
        self._spans.append((cons, page))
        try:
            prod = map_shared(page + 2 * size, mmap.PROT_READ, fd, page)
        except BaseException:
            self.close()
            raise
        self._spans.append((prod, page + 2 * size))
        self._consumer = ctypes.c_uint64.from_address(cons)
        self._producer = ctypes.c_uint64.from_address(prod)
        self._data = prod + page
        self._words = (ctypes.c_uint32 * (size // 2)).from_address(self._data)

    def pending(self) -> int:
        """Bytes written and not yet consumed."""
        return int(self._producer.value - self._consumer.value)

    def read(self, limit: int, spans: list[tuple[int, int]]) -> bytes:
        """Copy out the committed records (at most about ``limit`` bytes) and consume them.

        Returns the copied bytes; ``spans`` gets (offset, length) of each sample in them.
        """
        start = self._consumer.value
        end = self._producer.value
        pos = start
        words, mask = self._words, self._mask
        while pos < end and pos - start < limit:
            header = words[(pos & mask) >> 2]
            if header & BPF_RINGBUF_BUSY_BIT:
                break  # still being written: the records after it wait for the next read
            length = header & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT)
            if not header & BPF_RINGBUF_DISCARD_BIT:
                spans.append((pos - start + BPF_RINGBUF_HDR_SZ, length))
            pos += (length + BPF_RINGBUF_HDR_SZ + _PAD) & ~_PAD
        if pos == start:
            return b""
        data = ctypes.string_at(self._data + (start & mask), pos - start)
        self._consumer.value = pos
        return data

    def close(self) -> None:
        spans, self._spans = self._spans, []
        for addr, length in spans:
            unmap(addr, length)


#: What the sample callback returns to make ring_buffer__consume stop (after that record).
_STOP = -errno.ECANCELED


class LibbpfRingReader:
    """Reads the records through libbpf's ring_buffer__consume (any machine)."""

    def __init__(self, lib: Libbpf, fd: int) -> None:
        self._lib = lib
        self._chunks: list[bytes] = []
        self._room = 0
        self._callback = SAMPLE_FN(self._sample)  # kept alive: libbpf holds the pointer
        self._ring: int | None = lib.ring_buffer__new(fd, self._callback, None, None)

    def _sample(self, _ctx: int | None, data: int, size: int) -> int:
        self._chunks.append(ctypes.string_at(data, size))
        self._room -= size
        return _STOP if self._room <= 0 else 0

    def read(self, limit: int, spans: list[tuple[int, int]]) -> bytes:
        if self._ring is None:
            return b""
        chunks = self._chunks = []
        self._room = limit
        result = self._lib.ring_buffer__consume(self._ring)
        if result < 0 and result != _STOP:
            raise MonitorError(f"reading the eBPF ring buffer failed: {os.strerror(-result)}")
        offset = 0
        for chunk in chunks:
            spans.append((offset, len(chunk)))
            offset += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        ring, self._ring = self._ring, None
        if ring is not None:
            self._lib.ring_buffer__free(ring)
