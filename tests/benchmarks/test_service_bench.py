"""Smoke test of ``benchmarks.service``: a small storm through the service to two clients,
each of which sees the storm's processes, with latencies and CPU figures measured."""

from __future__ import annotations

import pytest
from benchmarks.service import through_service

from tests.fakes.availability import require_ebpf

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]


def test_a_small_storm_through_the_service_is_measured() -> None:
    require_ebpf()
    run = through_service(2, 200, 0.0, 2)
    assert len(run.client_cpu) == 2 and all(cpu > 0 for cpu in run.client_cpu)
    assert run.service_cpu > 0
    assert min(run.seen) >= 3 * 200  # fork, exec and exit of each, at least
    assert len(run.latencies) >= 2 * 3 * 200 and min(run.latencies) > 0
