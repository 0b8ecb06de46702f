"""Fuzzing the eBPF record decoder: nothing raises, every bad record counted, never delivered.

The example budget is the connector decoders' (PROCOBSRV_FUZZ_EXAMPLES, see
tests/fakes/fuzzing.py).
"""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from procobsrv.events import EventKind, QueuedItem
from procobsrv.linux.ebpf_abi import HEADER_SIZE, PO_CGROUP, PO_EXEC, PO_EXIT, PO_FORK
from procobsrv.linux.ebpf_decoder import Decoder, Program
from tests.fakes.ebpf import record
from tests.fakes.fuzzing import FUZZ, FUZZ_TIMEOUT

pytestmark = FUZZ_TIMEOUT
LENGTHS = struct.Struct("<6H")  # args_len .. reserved, at offset 60 of the header
LENGTHS_AT = 60
KIND = struct.Struct("<I")  # the header's first field
KINDS = {PO_FORK: EventKind.CREATED, PO_EXEC: EventKind.EXEC, PO_EXIT: EventKind.EXITED}
#: What a well-formed PO_CGROUP record gives in place of an event.
ANNOUNCED = "cgroup"


def decode(data: bytes, spans: list[tuple[int, int]]) -> tuple[list[QueuedItem], Decoder]:
    decoder = Decoder()
    decoder.programs.set(1, Program(0, "/parent", ["parent"], "/"))
    decoder.cgroups.add(7, "/known")  # the records' cgroup id: no lookup in /sys/fs/cgroup
    out: list[QueuedItem] = []
    decoder.decode(data, spans, out)
    return out, decoder


def valid_record(kind: int, argv: list[bytes], image: bytes) -> bytes:
    args = b"".join(a + b"\0" for a in argv)
    return record(kind, args=args, image=image, cwd=b"/tmp")


def expected(data: bytes, spans: list[tuple[int, int]]) -> list[EventKind | str | None]:
    """What each span must give, read from the bytes alone: its event's kind, ANNOUNCED (a
    cgroup's path, no event) or None (bad).

    A record is delivered when it lies inside the data, holds a whole header, its five
    variable parts fit after the header and its kind is one the program writes.
    """
    kinds: list[EventKind | str | None] = []
    for offset, length in spans:
        if length < HEADER_SIZE or offset < 0 or offset + length > len(data):
            kinds.append(None)
            continue
        parts = sum(LENGTHS.unpack_from(data, offset + LENGTHS_AT)[:5])
        kind = KIND.unpack_from(data, offset)[0]
        known = ANNOUNCED if kind == PO_CGROUP else KINDS.get(kind)
        kinds.append(known if parts <= length - HEADER_SIZE else None)
    return kinds


def events(kinds: list[EventKind | str | None]) -> list[EventKind | str]:
    return [k for k in kinds if k is not None and k != ANNOUNCED]


def test_a_well_formed_exec_decodes() -> None:
    data = valid_record(PO_EXEC, [b"/bin/true", b"x"], b"/usr/bin/true")
    (item,), decoder = decode(data, [(0, len(data))])
    assert decoder.bad == 0 and item.kind is EventKind.EXEC
    assert item.command_line == ["/bin/true", "x"] and item.image == "/usr/bin/true"
    assert item.cwd == "/tmp" and item.cgroup == "/known"


def test_the_namespaces_of_a_record_and_zero_for_not_known() -> None:
    """pid_ns 0: the kernel could not read the task's pid: all three pid fields unknown (a
    namespace's first process has ns_ppid 0, which stays 0 when its namespace is known)."""
    data = record(PO_FORK, namespaces=(1, 0, 4026532000, 4026532001))
    data += record(PO_EXIT, namespaces=(0, 0, 0, 4026532001))
    (first, second), decoder = decode(data, [(0, HEADER_SIZE), (HEADER_SIZE, HEADER_SIZE)])
    assert decoder.bad == 0
    assert (first.ns_pid, first.ns_ppid, first.pid_ns, first.mnt_ns) == (
        1,
        0,
        4026532000,
        4026532001,
    )
    assert (second.ns_pid, second.ns_ppid, second.pid_ns, second.mnt_ns) == (
        None,
        None,
        None,
        4026532001,
    )


def test_a_cgroup_record_names_the_cgroup_of_the_events_after_it() -> None:
    data = record(PO_CGROUP, cgroup_id=8, cgroup=b"/job.slice") + record(PO_FORK, cgroup_id=8)
    split = len(data) - HEADER_SIZE
    (item,), decoder = decode(data, [(0, split), (split, HEADER_SIZE)])
    assert decoder.bad == 0 and decoder.announced == 1
    assert item.cgroup_id == 8 and item.cgroup == "/job.slice"


@FUZZ
@given(
    st.binary(max_size=600),
    st.lists(st.tuples(st.integers(-8, 620), st.integers(0, 620)), max_size=12),
)
def test_arbitrary_bytes_and_spans(data: bytes, spans: list[tuple[int, int]]) -> None:
    items, decoder = decode(data, spans)
    assert len(items) + decoder.bad + decoder.announced == len(spans)
    want = expected(data, spans)
    assert [i.kind for i in items] == events(want)
    assert decoder.bad == want.count(None) and decoder.announced == want.count(ANNOUNCED)
    for item in items:
        assert item.kind in (EventKind.CREATED, EventKind.EXEC, EventKind.EXITED)


@FUZZ
@given(
    st.sampled_from([PO_FORK, PO_EXEC, PO_EXIT, 0, 4, 0xFFFFFFFF]),
    st.lists(st.binary(max_size=40), max_size=8),
    st.binary(max_size=300),
    st.data(),
)
def test_mutated_records(kind: int, argv: list[bytes], image: bytes, data: st.DataObject) -> None:
    rec = bytearray(valid_record(kind, argv, image))
    action = data.draw(st.sampled_from(["truncate", "lengths", "extend", "flip"]))
    if action == "truncate":
        rec = rec[: data.draw(st.integers(0, len(rec)))]
    elif action == "lengths":
        lengths = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=6, max_size=6))
        LENGTHS.pack_into(rec, LENGTHS_AT, *lengths)
    elif action == "extend":
        rec += data.draw(st.binary(max_size=64))
    else:
        at = data.draw(st.integers(0, len(rec) - 1))
        rec[at] ^= data.draw(st.integers(1, 255))
    blob = bytes(rec)
    items, decoder = decode(blob, [(0, len(blob))])
    assert len(items) + decoder.bad + decoder.announced == 1
    assert [i.kind for i in items] == events(expected(blob, [(0, len(blob))]))
    if items:  # delivered: a known kind, and every length inside the record
        assert kind in (PO_FORK, PO_EXEC, PO_EXIT) or action == "flip"
        assert len(blob) >= HEADER_SIZE
        used = sum(LENGTHS.unpack_from(blob, LENGTHS_AT)[:5])
        assert HEADER_SIZE + used <= len(blob)
    if kind not in (PO_FORK, PO_EXEC, PO_EXIT) and action != "flip":
        assert not items
