"""linux/ringbuf.py: RingReader over a memfd laid out as the kernel lays out a BPF ring
buffer (consumer page, producer page, the data area twice), no kernel program needed; and
LibbpfRingReader, the reader of other machines, on the program's real ring."""

from __future__ import annotations

import mmap
import os
import struct
from collections import Counter
from collections.abc import Iterator

import pytest

from procobsrv import QueuedItem
from procobsrv.linux import EbpfSource, ringbuf
from procobsrv.linux.ebpf_abi import (
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
)
from procobsrv.linux.ringbuf import LibbpfRingReader, RingReader
from tests.fakes.ebpf import run_child

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


@pytest.mark.kernel
@pytest.mark.usefixtures("ebpf")
def test_libbpf_reader_reads_whole_records_within_the_limit_and_consumes_them() -> None:
    """The reader of machines whose loads are not acquires (arm64): libbpf walks the ring.
    A read stops after the record that reaches the limit; the next read goes on from there."""
    source = EbpfSource(parent_filter=os.getpid(), read_proc=False)
    source.open()
    try:
        reader = LibbpfRingReader(source.program.lib, source.program.events_fd)
        pids = [run_child(["/bin/true", f"libbpf-{i}"]).pid for i in range(30)]
        first: list[tuple[int, int]] = []
        data = reader.read(1000, first)
        assert 1000 <= len(data) < 1000 + 4096 and len(first) < 90
        rest: list[tuple[int, int]] = []
        more = reader.read(1 << 20, rest)
        reader.close()
        items: list[QueuedItem] = []
        source.decoder.decode(data, first, items)
        source.decoder.decode(more, rest, items)
    finally:
        source.close()
    assert source.decoder.bad == 0
    assert Counter(i.process_id for i in items) == dict.fromkeys(pids, 3)


def test_only_x86_64_code_reads_the_ring_by_mmap() -> None:
    assert ringbuf.reads_by_mmap("x86_64", 8)
    for machine in ("aarch64", "armv7l", "i686", "riscv64"):
        assert not ringbuf.reads_by_mmap(machine, 8)
    # a 32-bit Python on an x86-64 kernel: platform.machine() says x86_64, the code is i386
    assert not ringbuf.reads_by_mmap("x86_64", 4)


def test_a_32_bit_python_on_x86_64_reads_through_libbpf(
    ring_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    monkeypatch.setattr(ringbuf, "LibbpfRingReader", lambda lib, fd: made.append("libbpf"))
    monkeypatch.setattr(ringbuf.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(ringbuf, "POINTER_BYTES", 8)
    reader = ringbuf.open_reader(None, ring_fd, SIZE)  # type: ignore[arg-type]
    assert isinstance(reader, RingReader)
    reader.close()
    monkeypatch.setattr(ringbuf, "POINTER_BYTES", 4)
    ringbuf.open_reader(None, ring_fd, SIZE)  # type: ignore[arg-type]
    assert made == ["libbpf"]
