"""Bad input from the kernel side, end to end: the monitor thread survives, counts stay exact."""

from __future__ import annotations

import logging
import random
import time

import pytest

from procobsrv import ApplicationScope, EventKind, MonitorError
from procobsrv.linux import connector
from procobsrv.linux.parser import Decoder
from tests.conftest import Collector
from tests.core.test_parser import fork
from tests.reliability.support import ReplaySocket, ack, monitoring, replay_source
from tests.reliability.test_fuzz import COUNTERS, ORACLE_CPUS, Oracle, counters, datagram

NO_CPU = 0xFFFFFFFF  # sentinels stay out of the sequence accounting the oracle predicts


def test_garbage_through_a_running_scope_leaves_the_monitor_thread_alive() -> None:
    logging.getLogger("procobsrv.linux").setLevel(logging.ERROR)  # thousands of defects
    try:
        source, replay = replay_source()
        source.decoder = Decoder(cpus=ORACLE_CPUS)
        handler = Collector()
        oracle = Oracle()
        rng = random.Random(20240607)
        with monitoring(handler, source=source) as scope:
            monitor = scope._session.monitor if scope._session else None
            assert monitor is not None
            for round_ in range(300):
                garbage = [datagram(rng, oracle, connector.SLOT_SIZE) for _ in range(5)]
                garbage.append(rng.randbytes(rng.randint(300, 600)))  # larger than a slot
                oracle.counts["malformed"] += 1
                replay.publish([*garbage, fork(1_000_000 + round_, 1, cpu=NO_CPU)])
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
    assert counters(source.decoder) == oracle.counts
    assert all(oracle.counts[c] for c in COUNTERS)  # every kind of defect was in the mix
    assert stats.lost == handler.lost == oracle.lost  # gaps in the garbage are reported losses
    assert stats.handler_errors == 0


def test_a_subscription_refused_in_the_ack_is_a_monitor_error() -> None:
    class Refusing(ReplaySocket):
        def send(self, op: int) -> None:
            self.sent_ops.append(op)
            if op == connector.PROC_CN_MCAST_LISTEN:
                self.publish([ack((self._ack + 1) & 0xFFFFFFFF, error=22)])  # EINVAL

    source, _ = replay_source()
    source._socket = Refusing()
    scope = ApplicationScope.get_instance(Collector())
    scope.stop_monitoring()
    with pytest.raises(MonitorError, match="refused the process-events subscription"):
        scope.start_monitoring(source=source)
    assert not scope.is_monitoring


def test_no_ack_from_the_kernel_fails_within_the_timeout() -> None:
    source, replay = replay_source(answer=False, ack_timeout=0.3)
    began = time.monotonic()
    with pytest.raises(MonitorError, match=r"did not acknowledge(.|\n)*namespace"):
        source.open()
    assert 0.3 <= time.monotonic() - began < 1.0
    assert replay.kernel is None  # the failed open released its socket
