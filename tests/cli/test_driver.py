"""``procobsrv driver ...``: the Linux message and the Windows handlers over the fake SCM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from procobsrv.cli import driver as cli_driver
from procobsrv.windows import winapi
from tests.fakes.windows import FakeWindows, Service


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="procobsrv")
    cli_driver.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_register_adds_the_subcommand() -> None:
    args = parse(["driver", "status"])
    assert (args.action, args.path, args.run) == ("status", None, cli_driver.run)
    with pytest.raises(SystemExit):
        parse(["driver", "reload"])


@pytest.mark.skipif(sys.platform == "win32", reason="the non-Windows message")
def test_linux_says_it_needs_windows(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_driver.run(parse(["driver", "install"])) == 2
    err = capsys.readouterr().err
    assert "needs Windows" in err and "process-events connector" in err


def test_windows_handlers(
    fake: FakeWindows, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sys_file = tmp_path / "ProcObsrv.sys"
    sys_file.write_bytes(b"MZ")
    fake.files.add(str(sys_file))
    path = str(sys_file)
    run = cli_driver._run_windows
    assert run("status", path) == 0
    assert run("install", path) == 0
    assert run("install", path) == 0
    assert run("start", path) == 0
    assert run("start", path) == 0
    assert run("status", path) == 0
    assert run("stop", path) == 0
    assert run("stop", path) == 0
    assert run("remove", path) == 0
    assert run("remove", path) == 0
    out = capsys.readouterr().out.splitlines()
    installed = str(Path(fake.system_directory) / "drivers" / "ProcObsrv.sys")
    assert out == [
        "ProcObsrv: not installed",
        f"ProcObsrv: installed ({installed})",
        f"ProcObsrv: already installed ({installed})",
        "ProcObsrv: started",
        "ProcObsrv: already running",
        f"ProcObsrv: running ({installed})",
        "ProcObsrv: stopped",
        "ProcObsrv: was not running",
        "ProcObsrv: removed",
        "ProcObsrv: was not installed",
    ]
    assert fake.open_handles() == []


def test_windows_handler_errors_exit_2(
    fake: FakeWindows, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_driver._run_windows("install", str(tmp_path / "missing.sys")) == 2
    assert "missing.sys is missing" in capsys.readouterr().err
    fake.admin = False
    sys_file = tmp_path / "ProcObsrv.sys"
    sys_file.write_bytes(b"MZ")
    assert cli_driver._run_windows("install", str(sys_file)) == 2
    assert "Run as administrator" in capsys.readouterr().err


def test_windows_error_is_one_line_and_status_2(
    fake: FakeWindows, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 13 item 18: a WinApiError escaped install() and the console showed a traceback.
    sys_file = tmp_path / "ProcObsrv.sys"
    sys_file.write_bytes(b"MZ")
    fake.services["ProcObsrv"] = Service("C:\\other\\x.sys")
    fake.fail("QueryServiceConfigW", winapi.ERROR_GEN_FAILURE)
    assert cli_driver._run_windows("install", str(sys_file)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("procobsrv driver install: ")
    assert "QueryServiceConfigW failed" in err
