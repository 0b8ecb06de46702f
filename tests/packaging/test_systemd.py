"""packaging/procobsrv.service: systemd accepts it, scores it well, and its command runs."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.availability import require_tool
from tests.fakes.watch import ROOT

UNIT = ROOT / "packaging" / "procobsrv.service"
INSTALLED = "/usr/local/bin/procobsrv"


def unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's procobsrv (verify checks it exists)."""
    here = Path(sys.executable).parent / "procobsrv"
    assert here.exists()
    copy = tmp_path / "procobsrv.service"
    copy.write_text(UNIT.read_text().replace(INSTALLED, str(here)))
    return copy


def exec_start() -> list[str]:
    for line in UNIT.read_text().splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line.removeprefix("ExecStart="))
    raise AssertionError("no ExecStart")


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze")
    result = subprocess.run(
        [tool, "verify", str(unit_for_this_machine(tmp_path))], capture_output=True, text=True
    )
    # verify only warns about unknown keys or bad values: any output is a failure here.
    assert result.returncode == 0 and not result.stdout + result.stderr, result.stderr


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze")
    unit = unit_for_this_machine(tmp_path)
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=stric"))
    result = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True)
    assert "Failed to parse protect system value" in result.stderr, result.stderr


def test_least_privilege_scores_ok(tmp_path: Path) -> None:
    """`systemd-analyze security` (offline): exposure below 3.0 ("OK") fails the check
    otherwise; the unit names every capability it keeps."""
    tool = require_tool("systemd-analyze")
    result = subprocess.run(
        [tool, "security", "--offline=yes", "--threshold=30", str(unit_for_this_machine(tmp_path))],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Overall exposure level for procobsrv.service: 2." in result.stdout
    text = UNIT.read_text()
    for line in ("ProtectSystem=strict", "NoNewPrivileges=yes", "LogsDirectory=procobsrv"):
        assert f"\n{line}\n" in text


@pytest.mark.kernel
@pytest.mark.usefixtures("connector")
def test_the_units_command_line_runs(tmp_path: Path) -> None:
    argv = exec_start()
    assert argv[0] == INSTALLED and "/var/log/procobsrv/events.jsonl" in argv
    out = tmp_path / "events.jsonl"
    argv = [sys.executable, "-m", "procobsrv"] + [
        str(out) if a == "/var/log/procobsrv/events.jsonl" else a for a in argv[1:]
    ]
    result = subprocess.run(
        [*argv, "--duration", "0.5"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "lines written to" in result.stderr


def test_docs_show_the_unit() -> None:
    assert UNIT.read_text() in (ROOT / "docs" / "agent.md").read_text()
