"""What decoding an exec record costs must not grow with its number of arguments (issue 22,
item 10: 2,000-argument execs at 266/s made the eBPF source lose 4,012 events).

Counted, not timed: the calls the decoder makes (Python functions and C functions, as
``sys.setprofile`` sees them) while it decodes one record. The 0.1 decoder called
``os.fsdecode`` once per argument, some 6,000 calls for a 2,000-argument exec, and fell
behind the ring buffer; a decoder that decodes the argv area once and splits it once makes
as many calls for 2,000 arguments as for 2. (The figures in time: ``python -m
benchmarks.decode_cost``.)
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from procobsrv.events import QueuedItem
from procobsrv.linux.ebpf_abi import PO_EXEC
from procobsrv.linux.ebpf_decoder import Decoder
from tests.fakes.ebpf import record

#: What a call shows to a profile function.
CALLS = frozenset({"call", "c_call"})


def calls_to_decode(argv: list[bytes]) -> tuple[int, QueuedItem]:
    """The calls made while decoding one exec record of ``argv``, and its item.

    The record is decoded once before (caches of comm and cgroup filled), then counted."""
    data = record(PO_EXEC, args=b"".join(a + b"\0" for a in argv), image=b"/bin/true", cwd=b"/")
    spans = [(0, len(data))]
    decoder = Decoder()
    out: list[QueuedItem] = []
    decoder.decode(data, spans, out)
    calls = 0

    def count(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event in CALLS:
            calls += 1

    sys.setprofile(count)
    try:
        decoder.decode(data, spans, out)
    finally:
        sys.setprofile(None)
    assert len(out) == 2 and decoder.bad == 0
    return calls, out[-1]


def test_decoding_an_exec_makes_no_call_per_argument() -> None:
    many = [b"/bin/true", *(b"%d" % (i % 10) for i in range(2000))]
    few = many[:2]
    calls_many, item = calls_to_decode(many)
    calls_few, _ = calls_to_decode(few)
    assert item.command_line == [a.decode() for a in many]  # and exact
    # A call or a few more would be a branch taken; one per argument is 2,000 more.
    assert calls_many - calls_few < 20, (calls_few, calls_many)
