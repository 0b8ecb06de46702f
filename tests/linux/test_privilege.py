"""linux/privilege.py: what the kernel refused, to whom, and what grants it, worded for the
process's real situation (a user, root without capabilities, root of a user namespace)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from procobsrv import MonitorError
from procobsrv.linux.privilege import NotPermitted, both_refused, connector_refused, ebpf_refused
from tests.fakes.availability import require_tool, unavailable
from tests.fakes.kernel_probe import NOBODY, as_user

_SAY = r"""
import json, os
from procobsrv.linux.privilege import connector_refused, ebpf_refused, in_user_namespace
print(json.dumps({"ebpf": str(ebpf_refused("bpf_object__load: Operation not permitted")),
                  "connector": str(connector_refused("the bind")),
                  "euid": os.geteuid(), "in_user_namespace": in_user_namespace()}))
"""


def said_as(prefix: list[str]) -> dict[str, object]:
    run = subprocess.run(
        [*prefix, sys.executable, "-c", _SAY],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert run.returncode == 0, run.stderr
    result: dict[str, object] = json.loads(run.stdout)
    return result


def root_prefix(*args: str) -> list[str]:
    if os.geteuid() != 0:
        unavailable("needs root")
    return list(args)


def test_a_refusal_is_a_monitor_error_naming_what_grants_it() -> None:
    error = connector_refused("the subscription")
    assert isinstance(error, MonitorError) and isinstance(error, NotPermitted)
    assert error.refused == "the subscription to the process-events group (cn_proc)"
    assert error.capabilities == "CAP_NET_ADMIN"
    assert "never to the system python3 (docs/linux.md, Privileges)" in str(error)


def test_both_refusals_are_one_error_with_both_grants() -> None:
    error = both_refused(ebpf_refused("bpf_object__load: EPERM"), connector_refused("the bind"))
    text = str(error)
    assert text.count("the kernel refused") == 1
    assert "loading of the eBPF program (bpf_object__load: EPERM) and the bind" in text
    assert "CAP_BPF + CAP_PERFMON (eBPF: exact command lines) or CAP_NET_ADMIN" in text


def test_a_user_is_told_to_run_as_root_or_grant() -> None:
    said = said_as(as_user(NOBODY))
    assert said["euid"] == NOBODY and said["in_user_namespace"] is False
    for text in (str(said["ebpf"]), str(said["connector"])):
        assert f"for this process (uid {NOBODY}). Run as root, or grant CAP_" in text


def test_root_without_the_capabilities_is_not_told_to_run_as_root() -> None:
    setpriv = require_tool("setpriv")
    said = said_as(root_prefix(setpriv, "--bounding-set=-bpf,-perfmon,-sys_admin"))
    text = str(said["ebpf"])
    assert "(uid 0) (it is root, but with a reduced capability set). Grant CAP_BPF" in text
    assert "Run as root" not in text


@pytest.mark.parametrize("mapped", [True, False])
def test_root_of_a_user_namespace_is_told_it_is_not_root_on_the_host(mapped: bool) -> None:
    unshare = require_tool("unshare")
    said = said_as(root_prefix(unshare, "--user", *(["--map-root-user"] if mapped else [])))
    assert said["in_user_namespace"] is True
    text = str(said["connector"])
    assert "(it runs in a user namespace, whose root is not root on the host). Run as root" in text
