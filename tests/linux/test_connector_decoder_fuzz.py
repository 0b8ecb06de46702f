"""Fuzzing the decoders of what the kernel side sends: nothing raises, every defect counted.

The example budget comes from PROCOBSRV_FUZZ_EXAMPLES (tests/fakes/fuzzing.py).
"""

from __future__ import annotations

import copy
import logging
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from procobsrv.events import EventKind, QueuedItem
from procobsrv.linux import connector
from procobsrv.linux import connector_abi as abi
from procobsrv.linux import connector_decoder as p
from tests.fakes.collector import Collector
from tests.fakes.connector import decode, fork, message, monitoring, replay_source
from tests.fakes.fuzzing import FUZZ, FUZZ_TIMEOUT, mutate, random_bytes, seeds
from tests.fakes.session import running_monitor

pytestmark = FUZZ_TIMEOUT
MASK = 0xFFFFFFFF
KNOWN = sorted(abi.UNION_LEN)
COUNTERS = ("malformed", "unknown", "netlink_errors")
_FIELDS = len(decode(fork(2, 1))[0])  # fields of one record tuple


@pytest.fixture(autouse=True, scope="module")
def _quiet_decoder() -> Iterator[None]:
    """Millions of skipped messages would be millions of log lines; one test checks them."""
    logger = logging.getLogger("procobsrv.linux")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def nlmsg(nl_type: int, payload: bytes = b"", nl_len: int | None = None) -> bytes:
    length = 16 + len(payload) if nl_len is None else nl_len
    return struct.pack("=IHHII", length, nl_type, 0, 0, 0) + payload


def align(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def counters(d: p.Decoder) -> dict[str, int]:
    return {c: getattr(d, c) for c in COUNTERS}


def well_formed(rec: abi.Record) -> bool:
    """What the decoder promises about every record it hands on."""
    return (
        len(rec) == _FIELDS
        and rec[abi.CN_IDX] == abi.CN_IDX_PROC
        and rec[abi.CN_VAL] == abi.CN_VAL_PROC
        and rec[abi.WHAT] in abi.UNION_LEN
        and rec[abi.CN_LEN] >= abi.EVENT_HEADER_LEN + abi.UNION_LEN[rec[abi.WHAT]]
    )


# -- structured: datagrams built from labelled messages, checked against an oracle -------

#: How each kind of message must be treated: (counter or None, accounted in the sequence).
LABELS: dict[str, tuple[str | None, bool]] = {
    "event": (None, True),
    "unknown_what": ("unknown", True),
    "short_union": ("malformed", True),
    "foreign_id": ("malformed", False),
    "cn_len_past_end": ("malformed", False),
    "cn_len_too_short": ("malformed", False),
    "too_small": ("malformed", False),
    "noop": (None, False),
    "error": ("netlink_errors", False),
    "overrun": ("netlink_errors", False),
    "other_type": ("unknown", False),
}


@dataclass
class Oracle:
    """What the decoder must report for the datagrams generated so far."""

    next_seq: dict[int, int] = field(default_factory=dict)
    seen_cpu: set[int] = field(default_factory=set)
    lost: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    records: list[tuple[int, int, int]] = field(default_factory=list)  # (what, cpu, seq)
    processes: list[tuple[EventKind, int]] = field(default_factory=list)  # the items they make


def process_items(what: int, union: bytes) -> list[tuple[EventKind, int]]:
    """The item a connector record becomes (<linux/cn_proc.h>'s unions): a fork or an exit of
    a thread (pid != tgid) and every other kind of event make none."""
    if what == abi.PROC_EVENT_FORK:
        _parent_pid, _parent_tgid, child_pid, child_tgid = struct.unpack_from("=4I", union)
        return [(EventKind.CREATED, child_tgid)] if child_pid == child_tgid else []
    if what == abi.PROC_EVENT_EXEC:
        _pid, tgid = struct.unpack_from("=2I", union)
        return [(EventKind.EXEC, tgid)]
    if what == abi.PROC_EVENT_EXIT:
        pid, tgid = struct.unpack_from("=2I", union)
        return [(EventKind.EXITED, tgid)] if pid == tgid else []
    return []


def labelled_message(rng: random.Random, oracle: Oracle) -> bytes:
    label = rng.choice(sorted(LABELS))
    counter, accounted = LABELS[label]
    cpu = rng.choice([0, 1, 2, 63, 0xFFFFFFFF])  # 0xFFFFFFFF: no per-CPU sequence
    seq = rng.choice([0, MASK, MASK - 3, rng.randint(0, MASK)])
    if accounted and cpu != 0xFFFFFFFF:
        if cpu in oracle.next_seq:
            step = rng.choice(["next", "next", "gap", "back"])
            last = oracle.next_seq[cpu] - 1
            if step == "next":
                seq = (last + 1) & MASK
            elif step == "gap":
                gap = rng.choice([1, 2, rng.randint(1, 100_000)])
                seq = (last + 1 + gap) & MASK
                oracle.lost += gap
            else:  # the kernel restarted its count (or a duplicate): never a loss
                seq = (last - rng.randint(0, 1000)) & MASK
        oracle.next_seq[cpu] = (seq + 1) & MASK
    if counter is not None:
        oracle.counts[counter] += 1
    what = rng.choice(KNOWN)
    need = abi.UNION_LEN[what]
    kw = {"cpu": cpu, "seq": seq, "ts": rng.getrandbits(64)}
    if label == "event":
        union = bytearray(random_bytes(rng, need, need + 40))
        if rng.random() < 0.5:  # a process, not a thread: pid == tgid
            if what == abi.PROC_EVENT_FORK:
                union[8:12] = union[12:16]
            elif what == abi.PROC_EVENT_EXIT:
                union[0:4] = union[4:8]
        oracle.records.append((what, cpu, seq))
        oracle.processes.extend(process_items(what, bytes(union)))
        return message(what, bytes(union), **kw)
    if label == "unknown_what":
        bad = rng.choice([3, 8, 0x400, 0x20000000, rng.getrandbits(32)])
        while bad in abi.UNION_LEN:
            bad = rng.getrandbits(32)
        return message(bad, random_bytes(rng, 0, 40), **kw)
    if label == "short_union":
        return message(what, random_bytes(rng, 0, need - 1), **kw)
    if label == "foreign_id":
        return message(what, bytes(need), idx=rng.choice([0, 2, 11, rng.getrandbits(32) | 2]), **kw)
    union = random_bytes(rng, need, need + 8)
    if label == "cn_len_past_end":
        return message(what, union, cn_len=rng.randint(16 + len(union) + 1, 0xFFFF), **kw)
    if label == "cn_len_too_short":
        return message(what, union, cn_len=rng.randint(0, 15), **kw)
    if label == "too_small":  # a DONE message that cannot hold a proc event at all
        return nlmsg(abi.NLMSG_DONE, random_bytes(rng, 0, 35))
    nl_type = {"noop": abi.NLMSG_NOOP, "error": abi.NLMSG_ERROR, "overrun": abi.NLMSG_OVERRUN}.get(
        label, rng.randint(5, 0xFFFF)
    )
    return nlmsg(nl_type, random_bytes(rng, 0, 40))


def datagram(rng: random.Random, oracle: Oracle, slot: int | None = None) -> bytes:
    """One datagram; with ``slot``, what the receive ring does with one larger than a slot."""
    before = copy.deepcopy(oracle)
    body = b"".join(align(labelled_message(rng, oracle)) for _ in range(rng.randint(1, 4)))
    tail = rng.choice(["none", "none", "pad", "trailing", "past_end"])
    if tail == "pad":  # fewer than 4 stray bytes: padding, ignored
        body += bytes(rng.randint(1, 3))
    elif tail == "trailing":  # 4..15 bytes: not even a netlink header
        oracle.counts["malformed"] += 1
        body += random_bytes(rng, 4, 15)
    elif tail == "past_end":  # a nested length pointing past the end of the datagram
        oracle.counts["malformed"] += 1
        extra = random_bytes(rng, 0, 60)
        body += nlmsg(abi.NLMSG_DONE, extra, nl_len=16 + len(extra) + rng.randint(1, 999))
    if slot is not None and len(body) > slot:  # truncated by the ring: one defect, no records
        oracle.__dict__.update(before.__dict__)
        oracle.counts["malformed"] += 1
    return body


def datagram_stream(rng: random.Random, slot: int | None = None) -> tuple[list[bytes], Oracle]:
    """Up to six datagrams of up to four labelled messages, and what decoding them must give."""
    oracle = Oracle()
    return [datagram(rng, oracle, slot) for _ in range(rng.randint(1, 6))], oracle


#: The stream uses CPUs up to 63: a decoder for a 64-CPU machine follows all their sequences
#: (test_connector_decoder.py checks that CPUs a machine cannot have are not followed).
ORACLE_CPUS = 64


@FUZZ
@given(seeds)
def test_fuzz_structured_datagrams_match_the_oracle(seed: int) -> None:
    datagrams, oracle = datagram_stream(random.Random(seed))
    d = p.Decoder(cpus=ORACLE_CPUS)
    out: list[abi.Record] = []
    for dg in datagrams:
        d.decode(dg, 0, len(dg), out)
    assert [(r[abi.WHAT], r[abi.CPU], r[abi.CN_SEQ]) for r in out] == oracle.records
    assert all(well_formed(r) for r in out)
    assert counters(d) == oracle.counts
    assert d.take_lost() == oracle.lost


# -- raw bytes and mutations: no exception, only well-formed records ----------------------

_NLHDR = struct.Struct("=IH")  # nlmsg_len, nlmsg_type
_CN_MSG = struct.Struct("=IIIIH")  # idx, val, seq, ack, len: after the netlink header
_EVENT = struct.Struct("=II")  # what, cpu: after the cn_msg header


@dataclass
class Walk:
    """What decoding arbitrary bytes must give, found by walking them independently of the
    decoder: the netlink framing, then each NLMSG_DONE as the cn_proc message it claims to be."""

    cpus: int
    last_seq: dict[int, int] = field(default_factory=dict)
    lost: int = 0
    forged: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    records: list[tuple[int, int, int]] = field(default_factory=list)  # (what, cpu, seq)

    def datagram(self, data: bytes | bytearray | memoryview, offset: int, length: int) -> None:
        if length == p.FORGED:
            self.forged += 1
            return
        if length < 0 or offset < 0 or offset + length > len(data):
            self.counts["malformed"] += 1
            return
        pos, end = offset, offset + length
        while end - pos >= 16:
            nl_len, nl_type = _NLHDR.unpack_from(data, pos)
            if not 16 <= nl_len <= end - pos:
                self.counts["malformed"] += 1
                return
            if nl_type == abi.NLMSG_DONE:
                self.message(bytes(data[pos : pos + nl_len]))
            elif nl_type in (abi.NLMSG_ERROR, abi.NLMSG_OVERRUN):
                self.counts["netlink_errors"] += 1
            elif nl_type != abi.NLMSG_NOOP:
                self.counts["unknown"] += 1
            pos += (nl_len + 3) & ~3
        if end - pos >= 4:
            self.counts["malformed"] += 1  # trailing bytes that are not padding

    def message(self, msg: bytes) -> None:
        if len(msg) < 16 + 20 + 16:  # netlink + cn_msg + proc event headers
            self.counts["malformed"] += 1
            return
        idx, val, seq, _ack, cn_len = _CN_MSG.unpack_from(msg, 16)
        if (idx, val) != (abi.CN_IDX_PROC, abi.CN_VAL_PROC) or not 16 <= cn_len <= len(msg) - 36:
            self.counts["malformed"] += 1
            return
        what, cpu = _EVENT.unpack_from(msg, 36)
        if cpu < self.cpus:  # only real CPUs have a sequence
            last = self.last_seq.get(cpu)
            self.last_seq[cpu] = seq
            gap = 0 if last is None else (seq - last - 1) & MASK
            self.lost += gap if gap < 0x80000000 else 0  # a step back is a restart, no loss
        if what not in abi.UNION_LEN:
            self.counts["unknown"] += 1
        elif cn_len < 16 + abi.UNION_LEN[what]:
            self.counts["malformed"] += 1
        else:
            self.records.append((what, cpu, seq))


def check_against_walk(d: p.Decoder, out: list[abi.Record], walk: Walk) -> None:
    assert [(r[abi.WHAT], r[abi.CPU], r[abi.CN_SEQ]) for r in out] == walk.records
    assert counters(d) == walk.counts
    assert d.take_lost() == walk.lost and d.forged == walk.forged


@FUZZ
@given(st.binary(max_size=700), st.integers(-8, 720), st.integers(-8, 720))
def test_fuzz_raw_bytes_never_raise(data: bytes, offset: int, length: int) -> None:
    d = p.Decoder()
    walk = Walk(cpus=d.cpus)
    out: list[abi.Record] = []
    d.decode(data, offset, length, out)
    walk.datagram(data, offset, length)
    d.decode(bytearray(data), 0, len(data), out)
    d.decode(memoryview(data), 0, len(data), out)
    for _ in range(2):
        walk.datagram(data, 0, len(data))
    assert all(well_formed(r) for r in out)
    check_against_walk(d, out, walk)


VALID = b"".join(align(fork(1000 + i, 1, cpu=i % 2, seq=i // 2)) for i in range(4))


@FUZZ
@given(seeds)
def test_fuzz_mutated_datagrams_never_raise(seed: int) -> None:
    data = mutate(random.Random(seed), VALID)
    d = p.Decoder()
    out = decode(data, d)
    assert all(well_formed(r) for r in out)
    # Every message either came out or was counted: the walk never skips one silently.
    assert len(out) + sum(counters(d).values()) >= 1 or len(data) < 16 or _only_noops(data)
    walk = Walk(cpus=d.cpus)
    walk.datagram(data, 0, len(data))
    check_against_walk(d, out, walk)


def _only_noops(data: bytes | bytearray) -> bool:
    pos = 0
    while len(data) - pos >= 16:
        nl_len, nl_type = struct.unpack_from("=IH", data, pos)
        if nl_type != abi.NLMSG_NOOP or not 16 <= nl_len <= len(data) - pos:
            return False
        pos += (nl_len + 3) & ~3
    return True


# -- the connector source above the decoder: real ring, real item building ----------------


@FUZZ
@given(seeds, st.lists(st.binary(max_size=400), max_size=3), st.booleans())
def test_fuzz_connector_source_builds_items_from_anything(
    seed: int, raw: list[bytes], read_proc: bool
) -> None:
    datagrams, oracle = datagram_stream(random.Random(seed), slot=connector.SLOT_SIZE)
    source, replay = replay_source(read_proc=read_proc)
    source.decoder = p.Decoder(cpus=ORACLE_CPUS)
    source.open()
    try:
        # Raw garbage first (it may contain sequence numbers the oracle does not know of).
        replay.publish(raw)
        source.fetch_batch()
        decoder = source.decoder
        before = counters(decoder)
        decoder._last_seq.clear()  # the structured stream starts its own sequence
        replay.publish(datagrams)
        batch = source.fetch_batch()
    finally:
        source.close()
    assert all(isinstance(i, QueuedItem) for i in batch.items)
    assert len(batch.items) <= len(oracle.records)
    assert [(i.kind, i.process_id) for i in batch.items] == oracle.processes
    got = counters(decoder)
    assert {c: got[c] - before[c] for c in COUNTERS} == oracle.counts
    assert batch.lost == oracle.lost


# -- garbage through a running scope: the monitor thread survives, counts stay exact ------


def test_garbage_through_a_running_scope_leaves_the_monitor_thread_alive() -> None:
    logging.getLogger("procobsrv.linux").setLevel(logging.ERROR)  # thousands of defects
    try:
        source, replay = replay_source()
        source.decoder = p.Decoder(cpus=ORACLE_CPUS)
        handler = Collector()
        oracle = Oracle()
        rng = random.Random(20240607)
        with monitoring(handler, source=source) as scope:
            monitor = running_monitor(scope)
            assert monitor is not None
            delivered: list[tuple[EventKind, int]] = []  # what the handler must get, in order
            for round_ in range(300):
                first = len(oracle.processes)
                garbage = [datagram(rng, oracle, connector.SLOT_SIZE) for _ in range(5)]
                garbage.append(rng.randbytes(rng.randint(300, 600)))  # larger than a slot
                oracle.counts["malformed"] += 1
                replay.publish([*garbage, fork(1_000_000 + round_, 1, cpu=abi.NO_CPU)])
                delivered += [*oracle.processes[first:], (EventKind.CREATED, 1_000_000 + round_)]
            sentinels = set(range(1_000_000, 1_000_300))
            assert handler.wait_for(
                lambda: len(handler.of(sentinels, EventKind.CREATED)) == 300, 20
            )
            assert monitor.is_alive() and monitor.error is None
        stats = scope.stats()
    finally:
        logging.getLogger("procobsrv.linux").setLevel(logging.NOTSET)
    got = [i.process_id for i in handler.items if i.process_id in sentinels]
    assert got == sorted(sentinels)  # in order, none lost
    assert [(i.kind, i.process_id) for i in handler.items] == delivered
    assert counters(source.decoder) == oracle.counts
    assert all(oracle.counts[c] for c in COUNTERS)  # every kind of defect was in the mix
    assert stats.lost == handler.lost == oracle.lost  # gaps in the garbage are reported losses
    assert stats.handler_errors == 0


# -- the log line of each defect ------------------------------------------------------------


def test_each_defect_is_logged_first_as_warning_then_as_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="procobsrv.linux.connector_decoder")
    d = p.Decoder()
    bad = [
        fork(2, 1)[:40],  # truncated: cannot hold a proc event
        fork(2, 1, cn_len=400),  # nested length past the end
        message(0x1234, bytes(24)),  # unknown what
        fork(2, 1, idx=11),  # bogus cn_msg id
        nlmsg(abi.NLMSG_ERROR, bytes(20)),
        nlmsg(abi.NLMSG_OVERRUN),
        nlmsg(77),  # unknown netlink type
        nlmsg(abi.NLMSG_DONE, bytes(8), nl_len=500),  # netlink length past the end
    ]
    for dg in bad:
        assert decode(dg, d) == []
    assert decode(nlmsg(abi.NLMSG_NOOP), d) == []  # NOOP is padding: neither counted nor logged
    d.decode(b"", 0, -1, [])  # what the ring reports for a datagram larger than a slot
    assert counters(d) == {"malformed": 5, "unknown": 2, "netlink_errors": 2}
    lines = [r for r in caplog.records if "skipped a connector message" in r.getMessage()]
    assert len(lines) == 9  # one per defect
    warned = [r.getMessage() for r in lines if r.levelno == logging.WARNING]
    assert len(warned) == 3  # the first of each counter loudly, the rest at debug level
    assert decode(fork(3, 1), d) != []  # and decoding goes on
