"""The driver's queue core (driver/poqueue.c) compiled natively and driven through ctypes.

The harness (driver/test/queue_harness.c) wraps each call in a mutex and keeps an
"event" flag exactly as ProcObsrv.c keeps its KEVENT, so these tests cover the
same locking discipline the driver uses.
"""

from __future__ import annotations

import ctypes
import json
import struct
import subprocess
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procobsrv.windows import contract
from tests.fakes.driverbuild import OUT, make, require_sanitizer
from tests.fakes.windows import make_record

pytestmark = pytest.mark.driver

# The record layout is the contract's (tests/windows/test_contract.py checks it vs ProcObsrv.h).
HEADER = contract.RECORD_HEADER_SIZE
MAX_IMAGE = contract.MAX_IMAGE_CHARS
MAX_CMD = contract.MAX_COMMAND_LINE_CHARS
MAX_RECORD = contract.MAX_RECORD_SIZE
QUEUED, DROPPED = 1, 2  # PO_PUSH_QUEUED, PO_PUSH_DROPPED (poqueue.h)
IMAGE_TRUNCATED = contract.RECORD_IMAGE_TRUNCATED
CMD_TRUNCATED = contract.RECORD_COMMAND_LINE_TRUNCATED
RECORD = contract.RECORD_HEADER
assert RECORD.size == HEADER
Stats = contract.Stats
record_size = contract.record_size


class RunResult(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in [
            "produced",
            "delivered",
            "dropped",
            "stats_dropped",
            "notified",
            "missing",
            "duplicates",
            "order_errors",
            "malformed",
            "empty_wakeups",
            "batches",
            "violations",
        ]
    ]


U16P = ctypes.POINTER(ctypes.c_uint16)


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    make("native")
    so = ctypes.CDLL(str(OUT / "native" / "libpoqueue.so"))
    so.poh_new.restype = ctypes.c_void_p
    so.poh_new.argtypes = [ctypes.c_uint32]
    so.poh_free.argtypes = [ctypes.c_void_p]
    so.poh_push.restype = ctypes.c_int
    so.poh_push.argtypes = [ctypes.c_void_p] + [ctypes.c_uint32] * 5
    so.poh_push.argtypes += [U16P, ctypes.c_uint32, U16P, ctypes.c_uint32, ctypes.c_uint64]
    so.poh_push.argtypes += [ctypes.POINTER(ctypes.c_uint64)]
    so.poh_pop.restype = ctypes.c_uint32
    so.poh_pop.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32]
    so.poh_pop.argtypes += [ctypes.POINTER(ctypes.c_uint32)]
    so.poh_stats.argtypes = [ctypes.c_void_p, ctypes.POINTER(Stats)]
    so.poh_signalled.argtypes = [ctypes.c_void_p]
    so.poh_violations.restype = ctypes.c_ulong
    so.poh_violations.argtypes = [ctypes.c_void_p]
    so.poh_run_concurrent.argtypes = [ctypes.c_uint32] * 4 + [ctypes.POINTER(RunResult)]
    so.poh_record_size.restype = ctypes.c_uint32
    so.poh_record_size.argtypes = [ctypes.c_uint32, ctypes.c_uint32]
    return so


def utf16(text: str) -> tuple[ctypes.Array[ctypes.c_uint16], int]:
    units = struct.unpack(f"<{len(text.encode('utf-16-le')) // 2}H", text.encode("utf-16-le"))
    return (ctypes.c_uint16 * max(1, len(units)))(*units), len(units)


@dataclass
class Event:
    kind: int = 1
    pid: int = 1
    ppid: int = 0
    exit_status: int = 0
    image: str = ""
    cmd: str = ""
    timestamp: int = 0

    def expected_record(self, seq: int) -> bytes:
        img = self.image[:MAX_IMAGE]
        cmd = self.cmd[:MAX_CMD]
        flags = (IMAGE_TRUNCATED if len(self.image) > MAX_IMAGE else 0) | (
            CMD_TRUNCATED if len(self.cmd) > MAX_CMD else 0
        )
        return make_record(
            self.kind,
            seq,
            self.pid,
            self.ppid,
            img,
            cmd,
            exit_status=self.exit_status,
            flags=flags,
            timestamp=self.timestamp,
        )


class Queue:
    """One harness queue; every call goes through the harness lock."""

    def __init__(self, lib: ctypes.CDLL, capacity: int) -> None:
        self.lib = lib
        self.h = lib.poh_new(capacity)
        assert self.h, "poh_new refused the capacity"

    def close(self) -> None:
        assert self.lib.poh_violations(self.h) == 0, "event state diverged from queue state"
        self.lib.poh_free(self.h)

    def push(self, ev: Event) -> tuple[int, int]:
        img, il = utf16(ev.image)
        cmd, cl = utf16(ev.cmd)
        seq = ctypes.c_uint64()
        rc = self.lib.poh_push(
            self.h,
            ev.kind,
            ev.pid,
            ev.ppid,
            ev.exit_status,
            0,
            img,
            il,
            cmd,
            cl,
            ev.timestamp,
            ctypes.byref(seq),
        )
        return rc, seq.value

    def pop(self, out_len: int) -> bytes:
        buf = (ctypes.c_ubyte * (out_len + 64))(*([0xEE] * (out_len + 64)))
        n = ctypes.c_uint32()
        got = self.lib.poh_pop(self.h, buf, out_len, ctypes.byref(n))
        raw = bytes(buf)
        assert got <= out_len
        assert set(raw[got:]) == {0xEE}, "wrote beyond the bytes it reported"
        return raw[:got]

    def stats(self) -> Stats:
        s = Stats()
        self.lib.poh_stats(self.h, ctypes.byref(s))
        return s

    @property
    def signalled(self) -> bool:
        return bool(self.lib.poh_signalled(self.h))


def split_records(data: bytes) -> list[bytes]:
    out, off = [], 0
    while off < len(data):
        size = struct.unpack_from("<I", data, off)[0]
        assert size >= HEADER and size % contract.RECORD_ALIGN == 0 and off + size <= len(data)
        out.append(data[off : off + size])
        off += size
    return out


def test_record_size_macro_matches_python(lib: ctypes.CDLL) -> None:
    for il, cl in [(0, 0), (1, 0), (3, 1), (4, 0), (MAX_IMAGE, MAX_CMD), (17, 33)]:
        assert lib.poh_record_size(il, cl) == record_size(il, cl)
    assert record_size(MAX_IMAGE, MAX_CMD) == MAX_RECORD == 6192


def test_record_layout_and_truncation(lib: ctypes.CDLL) -> None:
    q = Queue(lib, 1 << 16)
    events = [
        Event(kind=1, pid=10, ppid=4, image="C:\\a.exe", cmd="a.exe -x", timestamp=123),
        Event(kind=2, pid=10, exit_status=0xC0000005, timestamp=124),
        Event(kind=1, pid=11, ppid=10, image="é" * 1500, cmd="c" * 3000, timestamp=125),
        Event(kind=1, pid=12, image="odd", cmd=""),  # 3 WCHARs: needs padding
    ]
    for i, ev in enumerate(events, 1):
        assert q.push(ev) == (QUEUED, i)
    got = split_records(q.pop(1 << 16))
    assert got == [ev.expected_record(i) for i, ev in enumerate(events, 1)]
    flags = struct.unpack_from("<I", got[2], 36)[0]
    assert flags == IMAGE_TRUNCATED | CMD_TRUNCATED and len(got[2]) == MAX_RECORD
    q.close()


def test_event_is_a_level_not_a_pulse(lib: ctypes.CDLL) -> None:
    q = Queue(lib, 1 << 16)
    assert not q.signalled
    for pid in range(3):
        q.push(Event(pid=pid, image="x" * MAX_IMAGE))
    assert q.signalled and q.signalled  # stays set however often it is looked at
    assert len(split_records(q.pop(MAX_RECORD))) == 2  # partial drain
    assert q.signalled
    assert len(split_records(q.pop(MAX_RECORD))) == 1
    assert not q.signalled
    assert q.pop(MAX_RECORD) == b"" and not q.signalled
    q.close()


def test_full_queue_drops_and_counts(lib: ctypes.CDLL) -> None:
    size = record_size(8, 0)
    q = Queue(lib, 10 * size)
    results = [q.push(Event(pid=i, image="abcdefgh")) for i in range(25)]
    assert [r for r, _ in results] == [QUEUED] * 10 + [DROPPED] * 15
    assert [s for _, s in results] == list(range(1, 26))  # drops use sequence numbers too
    s = q.stats()
    assert (s.notified, s.dropped, s.queued_records, s.queued_bytes) == (25, 15, 10, 10 * size)
    assert s.peak_queued_bytes == s.capacity_bytes == 10 * size
    seqs = [struct.unpack_from("<Q", r, 8)[0] for r in split_records(q.pop(1 << 16))]
    assert seqs == list(range(1, 11))
    assert q.push(Event(pid=99, image="abcdefgh")) == (QUEUED, 26)  # room again
    s = q.stats()
    assert s.notified == s.delivered + s.dropped + s.queued_records == 26
    q.close()


def test_record_bigger_than_ring_is_dropped(lib: ctypes.CDLL) -> None:
    q = Queue(lib, 64)
    assert q.push(Event(image="x" * 20))[0] == DROPPED
    assert q.push(Event(image="x"))[0] == QUEUED
    assert not lib.poh_new(12) and not lib.poh_new(0)  # capacity must be a multiple of 8
    q.close()


def test_batching_into_every_buffer_size(lib: ctypes.CDLL) -> None:
    """Each pop returns the longest prefix of whole records that fits, for every size."""
    events = [Event(pid=i, image="i" * (i * 37 % 70), cmd="c" * (i * 91 % 110)) for i in range(9)]
    expected = [ev.expected_record(i) for i, ev in enumerate(events, 1)]
    total = sum(map(len, expected))
    for out_len in range(total + 9):
        q = Queue(lib, 1 << 15)
        for ev in events:
            q.push(ev)
        pending = deque(expected)
        while pending:
            fit, room = [], out_len
            while pending and len(pending[0]) <= room:
                room -= len(pending[0])
                fit.append(pending.popleft())
            got = q.pop(out_len)
            assert got == b"".join(fit), out_len
            if not fit:
                break  # too small for the next record: nothing moves
        assert q.stats().queued_records == len(pending)
        q.close()


class RingModel:
    """The documented policy: one ring, records contiguous, wrap to 0 when the tail is short."""

    def __init__(self, capacity: int) -> None:
        self.cap = capacity
        self.records: deque[bytes] = deque()
        self.head = self.tail = self.wrap_end = 0
        self.wrapped = False
        self.notified = self.delivered = self.dropped = self.peak = 0

    def push(self, ev: Event) -> tuple[int, int]:
        self.notified += 1
        rec = ev.expected_record(self.notified)
        size = len(rec)
        if not self.records:
            self.head = self.tail = 0
            self.wrapped = False
        if not self.wrapped and size <= self.cap - self.tail:
            at = self.tail
        elif not self.wrapped and size <= self.head:
            self.wrap_end, self.wrapped, at = self.tail, True, 0
        elif self.wrapped and size <= self.head - self.tail:
            at = self.tail
        else:
            self.dropped += 1
            return DROPPED, self.notified
        self.tail = at + size
        self.records.append(rec)
        self.peak = max(self.peak, sum(map(len, self.records)))
        return QUEUED, self.notified

    def pop(self, out_len: int) -> bytes:
        out = b""
        while self.records and len(self.records[0]) <= out_len - len(out):
            rec = self.records.popleft()
            out += rec
            self.head += len(rec)
            self.delivered += 1
            if self.wrapped and self.head == self.wrap_end:
                self.head, self.wrapped = 0, False
        if not self.records:
            self.head = self.tail = 0
            self.wrapped = False
        return out


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("push"),
            st.integers(0, 1100),  # image chars, some past the limit
            st.integers(0, 2100),  # command line chars
        ),
        st.tuples(st.just("pop"), st.integers(0, 3 * MAX_RECORD), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capacity=st.sampled_from([8, 256, 4096, 9000, 20000]), script=ops)
def test_property_against_model(lib: ctypes.CDLL, capacity: int, script: list) -> None:
    q, model = Queue(lib, capacity), RingModel(capacity)
    try:
        for n, (op, a, b) in enumerate(script):
            if op == "push":
                ev = Event(kind=1 + n % 2, pid=n, image="p" * a, cmd="q" * b, timestamp=n)
                assert q.push(ev) == model.push(ev)
            else:
                assert q.pop(a) == model.pop(a)
            s = q.stats()
            assert (s.notified, s.delivered, s.dropped) == (
                model.notified,
                model.delivered,
                model.dropped,
            )
            assert s.queued_records == len(model.records)
            assert s.queued_bytes == sum(map(len, model.records)) <= capacity
            assert s.peak_queued_bytes == model.peak
            assert q.signalled == bool(model.records)
    finally:
        q.close()


def check_run(r: RunResult) -> None:
    assert r.malformed == 0 and r.duplicates == 0 and r.order_errors == 0
    assert r.missing == 0, "a record was neither delivered nor counted dropped"
    assert r.delivered + r.dropped == r.produced == r.notified
    assert r.dropped == r.stats_dropped
    assert r.violations == 0 and r.empty_wakeups == 0


def test_concurrent_million_records(lib: ctypes.CDLL) -> None:
    """4 producer threads, 1,048,576 records: each delivered once in order or counted dropped."""
    r = RunResult()
    assert lib.poh_run_concurrent(1 << 20, 4, 1 << 18, 65536, ctypes.byref(r)) == 0
    assert r.produced == 1 << 20
    check_run(r)
    assert r.delivered > 0 and r.batches > 0


def test_concurrent_small_ring_drops_are_counted(lib: ctypes.CDLL) -> None:
    r = RunResult()
    assert lib.poh_run_concurrent(8192, 3, 50_000, MAX_RECORD, ctypes.byref(r)) == 0
    check_run(r)
    assert r.dropped > 0 and r.delivered > 0


def test_python_thread_producers(lib: ctypes.CDLL) -> None:
    """Producers as Python threads (ctypes drops the GIL) against a consumer thread."""
    q = Queue(lib, 1 << 14)
    producers, per = 4, 3000
    dropped = [0] * producers
    done = threading.Event()
    seen: list[bytes] = []

    def produce(pid: int) -> None:
        for n in range(per):
            rc, _ = q.push(Event(pid=pid << 24 | n, ppid=pid, image="t" * (n % 40)))
            dropped[pid - 1] += rc == DROPPED

    def consume() -> None:
        while not done.is_set() or q.signalled:
            seen.extend(split_records(q.pop(65536)))

    threads = [threading.Thread(target=produce, args=(i + 1,)) for i in range(producers)]
    reader = threading.Thread(target=consume)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    seqs = [struct.unpack_from("<Q", r, 8)[0] for r in seen]
    assert seqs == sorted(set(seqs))
    last = {}
    for r in seen:
        pid = struct.unpack_from("<I", r, 24)[0]
        assert pid & 0xFFFFFF > last.get(pid >> 24, -1)
        last[pid >> 24] = pid & 0xFFFFFF
    assert len(seen) + sum(dropped) == producers * per == q.stats().notified
    q.close()


@pytest.mark.parametrize("sanitizer", ["asan", "tsan"])
def test_under_sanitizers(sanitizer: str) -> None:
    """Edge cases and two concurrent runs under AddressSanitizer+UBSan / ThreadSanitizer."""
    make("native")
    binary = OUT / "native" / f"poqueue_{sanitizer}"
    require_sanitizer(binary)
    per = "200000" if sanitizer == "asan" else "50000"
    result = subprocess.run(
        [str(binary), per], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "runtime error" not in result.stderr and "WARNING" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    runs = [line for line in lines if "capacity" in line]
    assert len(runs) == 2 and all(r["ok"] for r in runs)
    assert all(r["delivered"] + r["dropped"] == r["produced"] == 4 * int(per) for r in runs)
    assert lines[-1] == {"failures": 0}


def test_queue_source_has_no_kernel_headers() -> None:
    src = Path(__file__).resolve().parents[2] / "driver"
    for name in ("poqueue.c", "poqueue.h"):
        text = (src / name).read_text()
        for header in ("ntddk.h", "wdm.h", "ntifs.h", "windows.h"):
            assert header not in text, f"{name} includes {header}"
