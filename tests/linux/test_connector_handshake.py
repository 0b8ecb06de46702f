"""The connector's subscription handshake with a kernel that refuses or never answers."""

from __future__ import annotations

import errno
import time

import pytest

from procobsrv import ApplicationScope, MonitorError
from procobsrv.linux import connector_abi as abi
from procobsrv.linux.connector_source import ConnectorSource
from tests.fakes.collector import Collector
from tests.fakes.connector import ReplaySocket, ack, replay_source


def test_a_subscription_refused_in_the_ack_is_a_monitor_error() -> None:
    class Refusing(ReplaySocket):
        def send(self, op: int) -> None:
            self.sent_ops.append(op)
            if op == abi.PROC_CN_MCAST_LISTEN:
                self.publish([ack(self.expected_ack, error=errno.EINVAL)])

    source, _ = replay_source(socket=Refusing())
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


@pytest.mark.parametrize("setting", [{"rcvbuf": 4096}, {"ack_timeout": 0.5}])
def test_socket_settings_with_a_socket_of_ones_own_are_refused(setting: dict) -> None:
    """rcvbuf and ack_timeout configure the socket the source makes: beside socket= they
    would be silently ignored."""
    with pytest.raises(ValueError, match="rcvbuf and ack_timeout are the socket's"):
        ConnectorSource(socket=ReplaySocket(), **setting)
