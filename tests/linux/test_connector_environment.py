"""Privilege and environment: an unprivileged user, foreign network and user namespaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.fakes.availability import unavailable
from tests.fakes.kernel_probe import NOBODY, OK, as_user, probe

pytestmark = pytest.mark.kernel

_PROBE = r"""
import json, subprocess, sys, time
from procobsrv import ApplicationScope, EventKind, MonitorError
from procobsrv.linux import ConnectorSource
from tests.fakes.collector import Collector
began = time.monotonic()
mode = sys.argv[1]
try:
    if mode == "open":
        source = ConnectorSource(ack_timeout=float(sys.argv[2]))
        try:
            source.open()
        finally:
            source.close()
        result = {"ok": True}
    else:
        handler = Collector()
        scope = ApplicationScope.get_instance(handler)
        scope.start_monitoring(source="connector")
        child = subprocess.Popen(["/bin/true"])
        child.wait()
        seen = handler.wait_for(lambda: bool(handler.of(child.pid, EventKind.EXITED)), 10)
        scope.stop_monitoring()
        result = {"ok": seen, "kinds": [i.kind.value for i in handler.of(child.pid)]}
except MonitorError as exc:
    result = {"ok": False, "error": str(exc)}
result["elapsed"] = time.monotonic() - began
print(json.dumps(result))
"""


def run_probe(*prefix: str, mode: str, ack_timeout: float = 2.0) -> dict[str, object]:
    run = subprocess.run(
        [*prefix, sys.executable, "-c", _PROBE, mode, str(ack_timeout)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    result: dict[str, object] = json.loads(run.stdout)
    return result


def connector_open(*prefix: str, ack_timeout: float = 2.0) -> dict[str, object]:
    """Open and close a ConnectorSource as ``prefix``: {"ok"} or {"error"}, and "elapsed"."""
    return run_probe(*prefix, mode="open", ack_timeout=ack_timeout)


def monitor(*prefix: str) -> dict[str, object]:
    """Monitor one /bin/true child through ApplicationScope as ``prefix``: its event kinds."""
    return run_probe(*prefix, mode="monitor")


def require_root_and(tool: str) -> str:
    path = shutil.which(tool)
    if path is None or os.geteuid() != 0:
        unavailable(f"needs root and {tool}(1)")
        raise AssertionError("unreachable")
    return path


def check_refused_bind(error: str, uid: int) -> None:
    """The error says what the kernel refused, to whom, and what grants it (not a version)."""
    assert (
        f"refused the bind to the process-events group (cn_proc) for this process (uid {uid})"
        in error
    )
    assert "CAP_NET_ADMIN" in error and "never to the system python3" in error
    assert "setcap" not in error and "6.6" not in error


@pytest.mark.usefixtures("connector")
def test_unprivileged_user_monitors_or_is_told_what_the_kernel_refused() -> None:
    """As uid 65534 the kernel's build decides (Linux 6.6 let any user listen; some builds of
    6.18 refuse the bind): the probe asks it, and the test expects what goes with the answer."""
    as_nobody = as_user(NOBODY)
    allowed = probe(*as_nobody).connector
    result = monitor(*as_nobody)
    if allowed == OK:
        assert result["ok"] is True, result
        assert result["kinds"] == ["created", "exec", "exited"]
    else:
        assert allowed == "bind: EPERM", allowed
        assert result["ok"] is False
        check_refused_bind(str(result["error"]), NOBODY)


def test_network_namespace_without_the_connector_fails_at_once() -> None:
    unshare = require_root_and("unshare")
    result = connector_open(unshare, "--net")
    assert result["ok"] is False
    assert "initial network namespace" in str(result["error"]) and "host" in str(result["error"])
    assert float(str(result["elapsed"])) < 0.5  # refused by the kernel: no waiting for an ack


def test_user_namespace_is_refused_or_ignored_and_the_error_says_which() -> None:
    """From a user namespace the kernel either refuses the bind (its root is no root on the
    host) or takes the subscription and never answers: the error says which, in time."""
    in_user_namespace = [require_root_and("unshare"), "--user", "--map-root-user"]
    allowed = probe(*in_user_namespace).connector
    began = time.monotonic()
    result = connector_open(*in_user_namespace, ack_timeout=0.5)
    assert time.monotonic() - began < 10
    assert result["ok"] is False
    error = str(result["error"])
    if allowed == "bind: EPERM":
        check_refused_bind(error, 0)
        assert "user namespace, whose root is not root on the host" in error
        assert float(str(result["elapsed"])) < 0.5  # refused at once: no waiting for an ack
    else:
        assert allowed == "no ack", allowed
        assert "did not acknowledge" in error and "user or PID namespace" in error
        assert 0.5 <= float(str(result["elapsed"])) < 1.5
