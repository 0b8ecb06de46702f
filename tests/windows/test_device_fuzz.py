"""Fuzzing the Windows driver's record batches: decoded exactly, or refused as ProtocolError.

The example budget comes from PROCOBSRV_FUZZ_EXAMPLES (tests/fakes/fuzzing.py).
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from procobsrv.windows import contract
from procobsrv.windows.device import ProtocolError, decode_records
from tests.fakes.fuzzing import FUZZ, FUZZ_TIMEOUT, mutate, seeds
from tests.fakes.windows import make_record

pytestmark = FUZZ_TIMEOUT


def _text(rng: random.Random) -> str:
    """Any string a driver may report: ASCII, the BMP without surrogates, astral planes."""
    ranges = [(32, 126), (0x80, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
    chars = []
    for _ in range(rng.choice([0, rng.randint(1, 40)])):
        low, high = rng.choice(ranges)
        chars.append(chr(rng.randint(low, high)))
    return "".join(chars)


@FUZZ
@given(seeds)
def test_fuzz_driver_batches_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    records = [
        (
            rng.choice([contract.KIND_CREATE, contract.KIND_EXIT]),
            rng.getrandbits(64),
            rng.getrandbits(32),
            rng.getrandbits(32),
            _text(rng),
            _text(rng),
            rng.getrandbits(32),
            rng.getrandbits(32),
        )
        for _ in range(rng.randint(0, 6))
    ]
    data = b"".join(
        make_record(kind, seq, pid, ppid, image, cmd, exit_status=status, flags=flags)
        for kind, seq, pid, ppid, image, cmd, status, flags in records
    )
    got = decode_records(data)
    assert [
        (r.kind, r.sequence, r.pid, r.parent_pid, r.image, r.command_line, r.exit_status, r.flags)
        for r in got
    ] == records
    for r in got:
        r.to_item()  # every decoded record becomes an item


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_driver_batches_raw_bytes(data: bytes) -> None:
    _decode_or_refuse(data)


DRIVER_VALID = make_record(1, 7, 100, 4, "\\??\\C:\\a.exe", '"a" b') + make_record(2, 8, 100)


@FUZZ
@given(seeds)
def test_fuzz_driver_batches_mutated(seed: int) -> None:
    _decode_or_refuse(mutate(random.Random(seed), DRIVER_VALID))


def _decode_or_refuse(data: bytes) -> None:
    """The driver's decoder is strict: it returns exact records or raises ProtocolError only."""
    try:
        records = decode_records(data)
    except ProtocolError:
        return
    for r in records:
        assert r.kind in (contract.KIND_CREATE, contract.KIND_EXIT)
        r.to_item()
