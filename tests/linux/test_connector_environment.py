"""Privilege and environment: an unprivileged user, foreign network and user namespaces."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time

import pytest

from tests.fakes.availability import unavailable

pytestmark = pytest.mark.kernel
NOBODY = 65534

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
        scope.start_monitoring()
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


def probe(*prefix: str, mode: str = "open", ack_timeout: float = 2.0) -> dict[str, object]:
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


def kernel_at_least(major: int, minor: int) -> bool:
    version = platform.release().split("-")[0].split(".")
    return (int(version[0]), int(version[1])) >= (major, minor)


def require_root_and(tool: str) -> str:
    path = shutil.which(tool)
    if path is None or os.geteuid() != 0:
        unavailable(f"needs root and {tool}(1)")
        raise AssertionError("unreachable")
    return path


@pytest.mark.usefixtures("connector")
def test_unprivileged_user_can_monitor_on_linux_6_6_and_later() -> None:
    setpriv = require_root_and("setpriv")
    as_nobody = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    readable = subprocess.run(
        [*as_nobody, sys.executable, "-c", "import procobsrv, tests"],
        capture_output=True,
        text=True,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    if readable.returncode != 0:
        unavailable(f"uid {NOBODY} cannot read the venv or the checkout: {readable.stderr}")
    result = probe(*as_nobody, mode="monitor")
    if kernel_at_least(6, 6):
        assert result["ok"] is True, result
        assert result["kinds"] == ["created", "exec", "exited"]
    else:  # older kernels need CAP_NET_ADMIN, and the error says so
        assert result["ok"] is False and "CAP_NET_ADMIN" in str(result["error"])


def test_network_namespace_without_the_connector_fails_at_once() -> None:
    unshare = require_root_and("unshare")
    result = probe(unshare, "--net")
    assert result["ok"] is False
    assert "initial network namespace" in str(result["error"]) and "host" in str(result["error"])
    assert float(str(result["elapsed"])) < 0.5  # refused by the kernel: no waiting for an ack


def test_user_namespace_subscription_is_ignored_and_fails_within_the_ack_timeout() -> None:
    unshare = require_root_and("unshare")
    began = time.monotonic()
    result = probe(unshare, "--user", "--map-root-user", ack_timeout=0.5)
    assert time.monotonic() - began < 10
    assert result["ok"] is False
    error = str(result["error"])
    assert "did not acknowledge" in error and "user or PID namespace" in error
    assert 0.5 <= float(str(result["elapsed"])) < 1.5
