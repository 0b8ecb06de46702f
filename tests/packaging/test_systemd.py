"""packaging/procobsrv.service: systemd accepts it, scores it well, and its command runs."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.fakes.availability import require_ebpf, require_tool
from tests.fakes.kernel_probe import as_user
from tests.fakes.watch import ROOT, watching

UNIT = ROOT / "packaging" / "procobsrv.service"
INSTALLED = "/usr/local/bin/procobsrv"
LOG = "/var/log/procobsrv/events.jsonl"


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


def setting(name: str) -> str:
    """The value of the unit's one ``name=`` line."""
    (value,) = [
        line.partition("=")[2]
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{name}=")
    ]
    return value


#: A uid no account uses, as systemd's DynamicUser= gives the service.
DYNAMIC_UID = 61934
#: Run before procobsrv's main: what MemoryDenyWriteExecute=yes asks of the process (no
#: mapping both writable and executable), set with prctl(PR_SET_MDWE) in the process itself.
DENY_WRITE_EXECUTE = """
import ctypes, runpy, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0):
    sys.exit(f"PR_SET_MDWE: errno {ctypes.get_errno()}")
sys.argv[0] = "procobsrv"
runpy.run_module("procobsrv", run_name="__main__")
"""


def as_the_service() -> list[str]:
    """A dynamic uid with exactly the unit's capabilities, no new privileges and no
    writable-executable memory, running procobsrv as the unit would."""
    caps = setting("AmbientCapabilities").split()
    assert caps == setting("CapabilityBoundingSet").split()
    assert setting("NoNewPrivileges") == "yes" and setting("MemoryDenyWriteExecute") == "yes"
    names = ",".join(["-all", *(f"+{cap.removeprefix('CAP_').lower()}" for cap in caps)])
    prefix = as_user(DYNAMIC_UID)
    return [
        *prefix,
        f"--inh-caps={names}",
        f"--ambient-caps={names}",
        f"--bounding-set={names}",
        "--no-new-privs",
        sys.executable,
        "-c",
        DENY_WRITE_EXECUTE,
    ]


@pytest.mark.kernel
def test_the_units_privileges_run_the_default_source_with_exact_command_lines(
    request: pytest.FixtureRequest,
) -> None:
    """The unit's command, as a dynamic user with exactly its capabilities, loads the eBPF
    source (no fallback line) and records each short child's exact command line and image."""
    require_ebpf()  # the kernel could load it as root: the unit's privileges are on trial
    argv = exec_start()
    assert argv[:2] == [INSTALLED, "watch"] and LOG in argv
    logs = Path(tempfile.mkdtemp(prefix="procobsrv-logs-"))  # where another uid can reach it
    request.addfinalizer(lambda: shutil.rmtree(logs))
    os.chown(logs, DYNAMIC_UID, DYNAMIC_UID)  # LogsDirectory=: the service's own directory
    out = logs / "events.jsonl"
    args = [str(out) if a == LOG else a for a in argv[2:]]
    tag = f"unit-{os.getpid()}"
    expected = {}
    with watching(*args, "--duration", "3", program=as_the_service()) as watch:
        for n in range(20):
            child = subprocess.Popen(
                ["/bin/echo", tag, str(n), "two words"], stdout=subprocess.DEVNULL
            )
            child.wait()
            expected[child.pid] = ["/bin/echo", tag, str(n), "two words"]
        _, err = watch.communicate(timeout=30)
    assert watch.returncode == 0, err
    assert "connector" not in err and "CAP_" not in err, err  # no fallback, no refusal
    records = [json.loads(line) for line in out.read_text().splitlines()]
    execs = {r["pid"]: r for r in records if r["kind"] == "exec" and r["pid"] in expected}
    assert {pid: r["command_line"] for pid, r in execs.items()} == expected
    assert {r["image"] for r in execs.values()} == {str(Path("/bin/echo").resolve())}


def test_docs_show_the_unit() -> None:
    assert UNIT.read_text() in (ROOT / "docs" / "how-to" / "service.md").read_text()
