"""The service's wire format and authorization rule, without a kernel: records back to the
same QueuedItems, lines split anywhere, and the sieve of a user's own processes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from procobsrv.agent.records import RecordMaker
from procobsrv.events import EventKind, QueuedItem
from procobsrv.memory import batch_bytes
from procobsrv.service import wire
from procobsrv.service.rule import OwnProcesses, Peer, Rule

EVERYTHING = QueuedItem(
    EventKind.EXEC,
    4242,
    1,
    1765150000.123456,
    monotonic_ns=987654321,
    image="/usr/bin/env",
    command_line=["env", "two words", "\udcff raw byte", 'quote " and \\ and \n'],
    uid=1000,
    start_ns=123,
    euid=0,
    comm="env",
    cwd="/tmp/x",
    script="/tmp/x/s.sh",
    command_line_truncated=True,
    command_line_size=99999,
    cgroup_id=77,
    cgroup="/user.slice",
)
EXITED = QueuedItem(EventKind.EXITED, 4242, 1, 1765150001.5, 987654999, exit_code=None, signal=9)


def lines(items: list[QueuedItem], lost: int = 0) -> bytes:
    return wire.Encoder(RecordMaker("host", "boot")).encode(items, lost)


def expected(item: QueuedItem) -> QueuedItem:
    """What a record carries of an item: every field of ``QueuedItem.as_dict``."""
    carried = set(item.as_dict()) | {"process_id", "parent_id", "monotonic_ns"}
    return dataclasses.replace(
        QueuedItem(item.kind, item.process_id, item.parent_id, item.timestamp),
        **{f.name: getattr(item, f.name) for f in dataclasses.fields(item) if f.name in carried},
    )


def test_records_decode_back_to_the_same_items() -> None:
    out = wire.Decoded()
    wire.Decoder().feed(lines([EVERYTHING, EXITED], lost=3), out)
    assert out.items == [expected(EVERYTHING), expected(EXITED)]
    assert out.items[0].command_line == EVERYTHING.command_line
    assert out.lost == 3 and out.end is None


def test_lines_split_anywhere_decode_alike() -> None:
    data = lines([EVERYTHING, EXITED]) + wire.end_line("the procobsrv service stopped")
    for cut in range(0, len(data), 7):
        decoder, out = wire.Decoder(), wire.Decoded()
        decoder.feed(data[:cut], out)
        decoder.feed(data[cut:], out)
        assert out.items == [expected(EVERYTHING), expected(EXITED)], cut
        assert out.end == "the procobsrv service stopped" and not out.error


def test_a_record_of_an_unknown_kind_is_skipped_and_a_bad_line_refused() -> None:
    out = wire.Decoded()
    wire.Decoder().feed(b'{"kind":"later"}\n' + lines([EXITED]), out)
    assert out.items == [expected(EXITED)]
    with pytest.raises(wire.WireError, match="not JSON"):
        wire.Decoder().feed(b"garbage\n", wire.Decoded())


def test_the_same_batch_is_encoded_once() -> None:
    encoder = wire.Encoder()
    batch = [EVERYTHING, EXITED]
    first = encoder.encode(batch, 0)
    assert encoder.encode(batch, 0) is first
    assert encoder.encode(list(batch), 0) is not first


def test_hellos() -> None:
    wire.check_client_hello(wire.client_hello()[:-1])
    for bad, why in (
        (b"nope", "not JSON"),
        (b'{"procobsrv":"events","protocol":99}', "protocol 99"),
        (b"{}", "must be"),
    ):
        with pytest.raises(wire.WireError, match=why):
            wire.check_client_hello(bad)
    hello = wire.check_service_hello(wire.service_hello("ebpf", 1000, False)[:-1])
    assert hello["sees"] == "own" and hello["uid"] == 1000 and hello["source"] == "ebpf"
    with pytest.raises(wire.WireError, match="refused this client: too many"):
        wire.check_service_hello(wire.error_line("too many clients")[:-1])
    assert json.loads(wire.end_line("x")) == {"kind": "end", "reason": "x"}


def item(uid: int | None, euid: int | None, pid: int = 1) -> QueuedItem:
    return QueuedItem(EventKind.CREATED, pid, 1, 0.0, uid=uid, euid=euid)


def test_a_user_sees_events_whose_real_or_effective_uid_is_its_own() -> None:
    sieve = OwnProcesses(1000)
    batch = [item(1000, 1000, 1), item(0, 1000, 2), item(1000, 0, 3), item(0, 0, 4)]
    batch += [item(None, None, 5), item(1001, 1001, 6)]
    kept, nbytes = sieve(batch, batch_bytes(batch))
    assert [i.process_id for i in kept] == [1, 2, 3]
    assert nbytes == batch_bytes(kept)
    assert sieve(batch, 0) == (kept, nbytes)  # remembered for the next client of the uid
    everything = [item(1000, 1000)]
    assert sieve(everything, 5) == (everything, 5)  # all kept: the batch itself


def test_root_and_the_group_see_everything_others_share_a_sieve_per_uid() -> None:
    rule = Rule(group=500)
    assert rule.sieve_for(Peer(1, 0, 0)) is None
    assert rule.sieve_for(Peer(1, 1000, 500)) is None  # primary group
    assert rule.sieve_for(Peer(1, 1000, 1000, (20, 500))) is None  # supplementary group
    first = rule.sieve_for(Peer(1, 1000, 1000, (20,)))
    assert first is not None and first is rule.sieve_for(Peer(2, 1000, 1000))
    assert rule.sieve_for(Peer(3, 1001, 1001)) is not first
    assert Rule().sieve_for(Peer(1, 1000, 500)) is not None  # no group: only root
