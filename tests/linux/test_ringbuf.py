"""linux/ringbuf.py's RingReader over a memfd laid out as the kernel lays out a BPF ring
buffer (consumer page, producer page, the data area twice): no kernel program needed."""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator

import pytest

from procobsrv.linux.ebpf_abi import (
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
)
from procobsrv.linux.ringbuf import RingReader

PAGE = mmap.PAGESIZE
SIZE = PAGE  # the smallest ring: one page of data
CONSUMER_POS, PRODUCER_POS, DATA = 0, PAGE, 2 * PAGE


def records(*samples: tuple[bytes, int]) -> bytes:
    """Each (sample, header bits) as the kernel writes it: length word, page offset word,
    the sample padded to 8 bytes."""
    out = b""
    for sample, bits in samples:
        body = struct.pack("=II", len(sample) | bits, 0) + sample
        out += body + bytes(-len(body) % 8)
    return out


@pytest.fixture
def ring_fd() -> Iterator[int]:
    fd = os.memfd_create("ringbuf-test")
    os.ftruncate(fd, DATA + 2 * SIZE)
    yield fd
    os.close(fd)


def publish(fd: int, data: bytes, producer: int) -> None:
    os.pwrite(fd, data, DATA)
    os.pwrite(fd, data, DATA + SIZE)  # the second mapping of the data area
    os.pwrite(fd, struct.pack("=Q", producer), PRODUCER_POS)


def test_committed_records_are_read_and_consumed(ring_fd: int) -> None:
    data = records((b"first", 0), (b"dropped", BPF_RINGBUF_DISCARD_BIT), (b"second!!", 0))
    publish(ring_fd, data, len(data))
    reader = RingReader(ring_fd, SIZE)
    try:
        assert reader.pending() == len(data)
        spans: list[tuple[int, int]] = []
        got = reader.read(SIZE, spans)
        assert got == data
        assert [got[o : o + n] for o, n in spans] == [b"first", b"second!!"]  # no discarded
        assert reader.pending() == 0
        (consumer,) = struct.unpack("=Q", os.pread(ring_fd, 8, CONSUMER_POS))
        assert consumer == len(data)
        assert reader.read(SIZE, spans) == b""
    finally:
        reader.close()


def test_a_record_still_being_written_stops_the_read(ring_fd: int) -> None:
    done = records((b"done", 0))
    data = done + records((b"busy", BPF_RINGBUF_BUSY_BIT), (b"later", 0))
    publish(ring_fd, data, len(data))
    reader = RingReader(ring_fd, SIZE)
    try:
        spans: list[tuple[int, int]] = []
        assert reader.read(SIZE, spans) == done
        assert spans == [(BPF_RINGBUF_HDR_SZ, len(b"done"))]
        assert reader.pending() == len(data) - len(done)
    finally:
        reader.close()


@pytest.mark.parametrize("size", [0, PAGE + 1, 3 * PAGE])
def test_sizes_the_kernel_cannot_have_are_refused(ring_fd: int, size: int) -> None:
    with pytest.raises(ValueError, match="power-of-2 multiple of a page"):
        RingReader(ring_fd, size)
