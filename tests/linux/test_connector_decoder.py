"""The connector decoder on crafted datagrams: layouts, multi-message walks, loss counting."""

from __future__ import annotations

import os
import struct

from procobsrv.linux import connector_abi as abi
from procobsrv.linux import connector_decoder as p
from tests.fakes.connector import decode, fork, message


def test_fork_record_fields() -> None:
    (rec,) = decode(fork(200, 100, cpu=1, seq=5, ts=99))
    assert rec[abi.WHAT] == abi.PROC_EVENT_FORK
    assert (rec[abi.CPU], rec[abi.CN_SEQ], rec[abi.TIMESTAMP]) == (1, 5, 99)
    assert (rec[abi.FORK_PARENT_TGID], rec[abi.FORK_CHILD_TGID]) == (100, 200)


def test_every_message_of_a_datagram_is_read() -> None:
    first = fork(2, 1, seq=0)
    padded = first + b"\0" * ((-len(first)) % 4)
    recs = decode(padded + fork(3, 1, seq=1) + fork(4, 1, seq=2))
    assert [r[abi.FORK_CHILD_TGID] for r in recs] == [2, 3, 4]


def test_exec_needs_only_its_own_union() -> None:
    (rec,) = decode(message(abi.PROC_EVENT_EXEC, struct.pack("=2I", 7, 7)))
    assert rec[abi.EXEC_PROCESS_PID] == rec[abi.EXEC_PROCESS_TGID] == 7


def test_sequence_gaps_are_counted_per_cpu() -> None:
    d = p.Decoder()
    for cpu, seq in [(0, 10), (1, 500), (0, 11), (0, 15), (1, 501), (1, 504)]:
        decode(fork(2, 1, cpu=cpu, seq=seq), d)
    assert d.take_lost() == 3 + 2
    assert d.take_lost() == 0


def test_sequence_wraps_around() -> None:
    d = p.Decoder()
    decode(fork(2, 1, seq=0xFFFFFFFE), d)
    decode(fork(2, 1, seq=1), d)  # skipped 0xFFFFFFFF and 0
    assert d.lost == 2


def test_acks_take_sequence_numbers_so_they_are_no_loss() -> None:
    d = p.Decoder()
    decode(fork(2, 1, seq=1), d)
    decode(message(abi.PROC_EVENT_NONE, struct.pack("=I", 0), seq=2, ack=9), d)
    decode(fork(3, 1, seq=3), d)
    assert d.lost == 0


def test_bad_input_is_counted_not_raised() -> None:
    d = p.Decoder()
    good = fork(2, 1)
    assert decode(good[:30], d) == []  # truncated
    assert decode(fork(2, 1, idx=7), d) == []  # not cn_proc
    assert decode(fork(2, 1, cn_len=400), d) == []  # length past the end
    assert decode(message(0x1234, b"\0" * 24), d) == []  # unknown what
    assert decode(message(abi.PROC_EVENT_EXIT, b"\0" * 8), d) == []  # exit too short
    assert decode(struct.pack("=IHHII", 16, abi.NLMSG_ERROR, 0, 0, 0), d) == []
    assert decode(struct.pack("=IHHII", 16, abi.NLMSG_NOOP, 0, 0, 0), d) == []
    assert (d.malformed, d.unknown, d.netlink_errors) == (4, 1, 1)
    assert decode(good, d) != []  # and it goes on


def test_only_possible_cpus_have_a_sequence() -> None:
    """A record naming a CPU this machine cannot have (forged, or garbage) neither starts
    nor follows a sequence: no made-up loss, however far its numbers jump."""
    d = p.Decoder()
    for seq in (0, 2**31 - 2, 5):
        assert decode(fork(2, 1, cpu=4000, seq=seq), d) != []  # still delivered
    decode(fork(2, 1, cpu=0, seq=7), d)
    decode(fork(2, 1, cpu=0, seq=8), d)
    assert d.take_lost() == 0 and 4000 not in d._last_seq
    assert d.cpus == p.possible_cpus() >= (os.cpu_count() or 1)
