"""Kernel overflow (ENOBUFS): the lost count from sequence gaps is exact.

Ground truth comes from a second, independent listener with a 64 MiB buffer in its own
process, which sees every connector message of the window (its own sequence accounting
proves it missed none). The monitor under test has a 4 KiB buffer and a busy process around
it, so the kernel drops messages for it. Then, per CPU, the messages the reference saw
strictly between the first and last message the monitor saw, and the monitor did not, are
exactly what it lost: its reported count must equal that number, not merely bound it.
Messages lost before a CPU's first or after its last received message cannot be noticed
(a gap shows only when the next message from the same CPU arrives), hence primers and
flushers pinned to every CPU around the storm.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import pytest

from procobsrv import EventKind, QueuedItem
from procobsrv.linux import ConnectorSource
from procobsrv.linux import connector_abi as abi
from tests.fakes.collector import Collector
from tests.fakes.connector import RecordingDecoder, flush_cpus, monitoring
from tests.fakes.storm import Storm

pytestmark = pytest.mark.kernel

_REFERENCE = r"""
import json, select, sys
from procobsrv.linux import ConnectorSource
from tests.fakes.connector import RecordingDecoder
source = ConnectorSource(rcvbuf=64 << 20, read_proc=False)
source.decoder = decoder = RecordingDecoder()
source.open()
print("ready", flush=True)
poll = select.poll()
poll.register(sys.stdin, select.POLLIN)
poll.register(source.wait_handle, select.POLLIN)
lost = 0
while True:
    ready = {fd for fd, _ in poll.poll()}
    lost += source.fetch_batch().lost
    if sys.stdin.fileno() in ready:
        break
lost += source.fetch_batch().lost
source.close()
json.dump({"seen": decoder.seen, "lost": lost, "overruns": source.overruns,
           "malformed": decoder.malformed + decoder.unknown}, sys.stdout)
"""


class Busy(Collector):
    """A handler that works hard in Python on every event, starving the monitor of the GIL."""

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        deadline = time.perf_counter() + 0.0005
        while time.perf_counter() < deadline:
            pass
        super().on_process_event(item, param)


def storm_records(seen: list[tuple[int, ...]], pids: set[int]) -> set[tuple[int, int]]:
    """(cpu, seq) of the fork, exec and exit of every storm process."""
    out = set()
    for cpu, seq, what, u0, u1, u2, u3 in seen:
        if (
            (what == abi.PROC_EVENT_FORK and u2 == u3 and u3 in pids)
            or (what == abi.PROC_EVENT_EXEC and u1 in pids)
            or (what == abi.PROC_EVENT_EXIT and u0 == u1 and u1 in pids)
        ):
            out.add((cpu, seq))
    return out


@pytest.mark.usefixtures("connector")
def test_lost_count_from_sequence_gaps_is_exact() -> None:
    reference = subprocess.Popen(
        [sys.executable, "-c", _REFERENCE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert reference.stdout is not None and reference.stdout.readline() == "ready\n"
    source = ConnectorSource(rcvbuf=4096)
    source.decoder = small = RecordingDecoder()
    handler = Busy()
    switch = sys.getswitchinterval()
    with monitoring(handler, source=source, queue_limit=10**7) as scope:
        flush_cpus(handler)  # every CPU has a first message: losses from here on are visible
        sys.setswitchinterval(0.02)  # a busy application: the monitor waits longer for the GIL
        try:
            storm = Storm(spawners=2, per_spawner=1000)
            pids = storm.wait()
        finally:
            sys.setswitchinterval(switch)
        flush_cpus(handler)
    stats = scope.stats()
    out, _ = reference.communicate("stop\n", timeout=30)
    ref = json.loads(out)
    ref_seen = [tuple(r) for r in ref["seen"]]

    # The reference is lossless and saw the whole storm: that is the ground truth.
    assert ref["lost"] == 0 and ref["overruns"] == 0 and ref["malformed"] == 0
    truth = storm_records(ref_seen, pids)
    assert len(pids) == 2000 and len(truth) == 3 * len(pids)

    # The monitor under test really overflowed, and said so.
    assert source.overruns > 0, "no ENOBUFS: the test did not overflow the socket"
    assert stats.queue_overflow == 0  # every loss below is the kernel's
    assert handler.lost == stats.lost > 0

    # Exact: what the reference saw inside each CPU's window that the monitor did not.
    got = defaultdict(list)
    for cpu, seq, *_ in small.seen:
        got[cpu].append(seq)
    missing: set[tuple[int, int]] = set()
    for cpu, seqs in got.items():
        first, last, have = seqs[0], seqs[-1], set(seqs)
        missing |= {
            (c, s) for c, s, *_ in ref_seen if c == cpu and first < s < last and s not in have
        }
    assert stats.lost == len(missing)

    # The storm's own share: every missing storm event is in the count; the rest of the
    # count is other processes' events (and threads') that went missing in the same window.
    delivered = {(i.kind, i.process_id) for i in handler.items if i.process_id in pids}
    missing_storm = truth & missing
    assert len(missing_storm) == 3 * len(pids) - len(delivered)
    assert len(missing_storm) <= stats.lost
    print(
        f"storm {3 * len(pids)} events, ENOBUFS {source.overruns}, lost {stats.lost}, "
        f"of which storm {len(missing_storm)}"
    )
    assert EventKind.EXITED in {i.kind for i in handler.items}
