"""packaging/procobsrv-serve.{socket,service}: systemd accepts them, the service scores well,
and its command, handed the socket as systemd hands it, serves events."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.fakes.availability import require_ebpf, require_tool
from tests.fakes.service import RawClient
from tests.fakes.watch import ROOT
from tests.packaging.test_systemd import INSTALLED, UNIT, as_the_service

SOCKET_UNIT = ROOT / "packaging" / "procobsrv-serve.socket"
SERVICE_UNIT = ROOT / "packaging" / "procobsrv-serve.service"


def units_for_this_machine(tmp_path: Path) -> Path:
    here = Path(sys.executable).parent / "procobsrv"
    assert here.exists()
    for unit in (SOCKET_UNIT, SERVICE_UNIT):
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED, str(here)))
    return tmp_path / SERVICE_UNIT.name


def setting(unit: Path, name: str) -> str:
    (value,) = [
        line.partition("=")[2]
        for line in unit.read_text().splitlines()
        if line.startswith(name + "=")
    ]
    return value


def test_systemd_analyze_verify_accepts_both_units(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze")
    service = units_for_this_machine(tmp_path)
    for unit in (service, tmp_path / SOCKET_UNIT.name):
        result = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True)
        assert result.returncode == 0 and not result.stdout + result.stderr, result.stderr


def test_the_service_scores_ok_and_the_socket_is_safe(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze")
    result = subprocess.run(
        [
            tool,
            "security",
            "--offline=yes",
            "--threshold=30",
            str(units_for_this_machine(tmp_path)),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Overall exposure level for procobsrv-serve.service: 2." in result.stdout
    assert setting(SOCKET_UNIT, "ListenStream") == "/run/procobsrv/events.sock"
    assert setting(SOCKET_UNIT, "DirectoryMode") == "0755"
    assert setting(SOCKET_UNIT, "SocketMode") == "0666"


@pytest.mark.kernel
def test_the_units_command_serves_the_socket_systemd_hands_it() -> None:
    """systemd-socket-activate plays systemd: it listens, then runs the unit's command as a
    dynamic uid with exactly the unit's capabilities; a client gets an exact command line."""
    require_ebpf()
    activate = require_tool("systemd-socket-activate")
    argv = shlex.split(setting(SERVICE_UNIT, "ExecStart"))
    assert argv == [INSTALLED, "serve"]
    for name in ("AmbientCapabilities", "CapabilityBoundingSet", "NoNewPrivileges"):
        assert setting(SERVICE_UNIT, name) == setting(SERVICE_UNIT.with_name(UNIT.name), name)
    directory = Path(tempfile.mkdtemp(prefix="procobsrv-unit-"))
    directory.chmod(0o755)
    path = str(directory / "events.sock")
    program = [*as_the_service(), *argv[1:]]  # the same privileges as procobsrv.service
    proc = subprocess.Popen([activate, "-l", path, *program], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        client = RawClient(path)  # the first connection starts the command
        assert client.hello is not None and client.hello["source"] == "ebpf", client.hello
        marker = ["/bin/echo", f"unit-{os.getpid()}", "two words"]
        subprocess.run(marker, check=True, stdout=subprocess.DEVNULL)
        got = client.records_until(
            lambda r: r.get("kind") == "exec" and r.get("command_line") == marker
        )
        assert got[-1]["image"] == str(Path("/bin/echo").resolve())
        client.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "Traceback" not in err, err
