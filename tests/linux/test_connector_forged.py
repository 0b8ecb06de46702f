"""Forged connector datagrams: only the kernel (netlink port id 0) is believed.

Any process with CAP_NET_ADMIN may send a netlink datagram to the listener's port id. The
forger here is real: a second NETLINK_CONNECTOR socket sending to the running monitor.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import subprocess
from collections.abc import Iterator

import pytest

from procobsrv import ApplicationScope, MonitorError
from procobsrv.linux import connector_abi as abi
from procobsrv.linux.connector import NETLINK_CONNECTOR, ConnectorSocket
from procobsrv.linux.connector_source import ConnectorSource
from tests.fakes.availability import require_connector, unavailable
from tests.fakes.collector import Collector
from tests.fakes.connector import ack, message
from tests.fakes.session import running_source

pytestmark = pytest.mark.kernel
FAKE_PID = 3_999_999  # above any pid_max: no real process has it


@pytest.fixture
def forger() -> Iterator[socket.socket]:
    if os.geteuid() != 0:
        unavailable("forging netlink datagrams to another socket needs CAP_NET_ADMIN (root)")
    require_connector()
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    sock.bind((0, 0))
    try:
        yield sock
    finally:
        sock.close()


def forgeries(seq: int) -> list[bytes]:
    """What the issue saw delivered as real: a fork of a made-up pid by init, an exec of
    pid 1, an exit of the made-up pid by SIGKILL, and sequence numbers that jump far ahead
    on a real CPU and on CPUs that do not exist."""
    fake_exec = struct.pack("=II", FAKE_PID, FAKE_PID)
    killed = struct.pack("=IIIIII", FAKE_PID, FAKE_PID, 9, 17, 1, 1)
    return [
        message(abi.PROC_EVENT_FORK, struct.pack("=IIII", 1, 1, FAKE_PID, FAKE_PID), seq=seq),
        message(abi.PROC_EVENT_EXEC, struct.pack("=II", 1, 1), seq=seq + 1),
        message(abi.PROC_EVENT_EXIT, killed, seq=seq + 2**31 - 2),
        message(abi.PROC_EVENT_EXEC, fake_exec, cpu=0, seq=seq + 5),
        message(abi.PROC_EVENT_EXEC, fake_exec, cpu=4000, seq=0),
        message(abi.PROC_EVENT_EXEC, fake_exec, cpu=4000, seq=2**30),
    ]


def test_forged_datagrams_are_dropped_and_counted(forger: socket.socket) -> None:
    collector = Collector()
    scope = ApplicationScope.get_instance(collector)
    scope.start_monitoring(source="connector")
    try:
        source = running_source(scope)
        assert isinstance(source, ConnectorSource)
        # The listener's netlink port id, read from a duplicate of its socket.
        with socket.socket(fileno=os.dup(source.wait_handle)) as listener:
            port_id = listener.getsockname()[0]
        for datagram in forgeries(seq=1000):
            forger.sendto(datagram, (port_id, 0))
        child = subprocess.Popen(["/bin/true", "after-the-forgeries"])  # queued behind them
        child.wait()
        collector.wait_exit(child.pid)
    finally:
        scope.stop_monitoring()
    assert not collector.of({1, FAKE_PID}), collector.of({1, FAKE_PID})
    assert collector.lost == 0 and scope.stats().lost == 0
    assert source.decoder.forged == len(forgeries(0))


def test_a_forged_ack_cannot_fail_or_complete_the_subscription(
    forger: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handshake reads through the same check: a forged 'refused' ack with our own ack
    number, sent before the kernel's, neither fails the start nor stands in for the real one."""
    real_send = ConnectorSocket.send

    def forge_then_send(self: ConnectorSocket, op: int) -> None:
        with socket.socket(fileno=os.dup(self.fd)) as listener:
            port_id = listener.getsockname()[0]
        refusal = ack(self.expected_ack, error=errno.EPERM)
        forger.sendto(refusal, (port_id, 0))
        real_send(self, op)

    monkeypatch.setattr(ConnectorSocket, "send", forge_then_send)
    sock = ConnectorSocket()
    source = ConnectorSource(socket=sock)
    try:
        source.open()  # before the fix: MonitorError, "not permitted to listen"
    except MonitorError as exc:
        pytest.fail(f"a forged ack decided the subscription: {exc}")
    try:
        assert source.decoder.forged == 1 and sock.acknowledged
    finally:
        source.close()
