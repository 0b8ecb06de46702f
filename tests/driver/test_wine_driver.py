"""ProcObsrv.sys running for real under Wine: SCM load, IOCTLs, the named event, a flood of
injected events, bad input, unload and service deletion (driver/test/pocheck.c does the
Windows side and prints one JSON line per check)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.fakes.availability import require_tool
from tests.fakes.driverbuild import make

pytestmark = pytest.mark.wine

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "driver"
OUT = DRIVER / "out"
STAGE_BUDGET_S = 180  # the whole Wine stage, prefix creation included


@pytest.fixture(scope="module")
def wine_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway Wine prefix (FIELD-NOTES section 4); killed and removed afterwards."""
    for tool in ("wine", "wineserver", "make", "x86_64-w64-mingw32-gcc"):
        require_tool(tool)
    make("all")
    make("selftest")
    prefix = tmp_path_factory.mktemp("wineprefix")
    env = dict(os.environ)
    env.update(
        WINEPREFIX=str(prefix),
        WINEDEBUG="-all",
        WINEDLLOVERRIDES="mscoree,mshtml=",
        WINEARCH="win64",
    )
    env.pop("DISPLAY", None)
    start = time.monotonic()
    boot = subprocess.run(
        ["wine", "wineboot", "-i"], env=env, capture_output=True, text=True, timeout=120
    )
    subprocess.run(["wineserver", "-w"], env=env, timeout=120, check=False)
    assert boot.returncode == 0, boot.stderr[-2000:]
    drive_c = prefix / "drive_c"
    shutil.copy(OUT / "selftest" / "ProcObsrv.sys", drive_c / "ProcObsrvSelftest.sys")
    shutil.copy(OUT / "ProcObsrv.sys", drive_c / "ProcObsrv.sys")
    shutil.copy(OUT / "pocheck.exe", drive_c / "pocheck.exe")
    env["PROCOBSRV_STAGE_START"] = str(start)
    yield env
    subprocess.run(["wineserver", "-k"], env=env, timeout=60, check=False)
    shutil.rmtree(prefix, ignore_errors=True)


def run_client(env: dict[str, str], mode: str, sys_name: str) -> dict[str, dict]:
    result = subprocess.run(
        ["wine", "C:\\pocheck.exe", mode, f"C:\\{sys_name}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines and "summary" in lines[-1], result.stdout + result.stderr[-3000:]
    checks = {line["check"]: line for line in lines[:-1]}
    checks["summary"] = lines[-1]["summary"]
    checks["exit_code"] = {"value": result.returncode}
    return checks


@pytest.fixture(scope="module")
def selftest(wine_env: dict[str, str]) -> dict[str, dict]:
    return run_client(wine_env, "selftest", "ProcObsrvSelftest.sys")


@pytest.fixture(scope="module")
def normal(wine_env: dict[str, str], selftest: dict[str, dict]) -> dict[str, dict]:
    # After the self-test run: also proves the prefix was left clean (service deleted).
    return run_client(wine_env, "normal", "ProcObsrv.sys")


def assert_ok(checks: dict[str, dict], *names: str) -> None:
    for name in names:
        assert name in checks, f"check {name} never ran"
        assert checks[name]["ok"] is True, checks[name]


def test_loads_through_scm_and_opens(selftest: dict[str, dict]) -> None:
    assert_ok(
        selftest,
        "scm_open",
        "service_create",
        "service_start",
        "event_open_global",
        "device_open",
        "stats_initial",
        "activate",
        "stats_active",
    )


def test_flood_accounted_exactly(selftest: dict[str, dict]) -> None:
    assert_ok(
        selftest,
        "flood_ran",
        "flood_records_well_formed",
        "flood_sequence_order",
        "flood_exactly_once_or_dropped",
        "flood_per_producer_order",
        "flood_stats_add_up",
    )
    flood = selftest["flood_exactly_once_or_dropped"]
    assert selftest["flood_ran"]["injected"] >= 100_000
    assert flood["notified"] == selftest["flood_ran"]["injected"]
    assert flood["delivered"] + flood["dropped"] == flood["notified"]
    assert flood["gaps"] == flood["dropped"]


def test_event_signalled_exactly_while_queued(selftest: dict[str, dict]) -> None:
    assert_ok(
        selftest,
        "event_clear_when_empty",
        "event_set_while_queued",
        "partial_drain_keeps_event",
        "event_cleared_by_drain",
        "flood_event_never_lied",
    )
    assert selftest["flood_event_never_lied"]["wakeups"] > 0


def test_full_queue_drops_instead_of_blocking(selftest: dict[str, dict]) -> None:
    assert_ok(selftest, "overflow_drops_and_counts", "overflow_keeps_oldest")
    over = selftest["overflow_drops_and_counts"]
    assert over["dropped"] > 0
    assert over["queued"] + over["dropped"] == over["injected"]
    assert over["slowest_call_ms"] < 1000


def test_truncation(selftest: dict[str, dict]) -> None:
    assert_ok(selftest, "truncation_to_limits")


BAD_INPUT = {
    "activate_no_input": 24,
    "activate_short_input": 24,
    "activate_long_input": 24,
    "activate_bad_size_field": 87,
    "activate_wrong_abi": 1306,
    "activate_unknown_flag": 87,
    "activate_reserved_nonzero": 87,
    "deactivate_when_inactive": 22,
    "inject_when_inactive": 22,
    "activate_twice": 22,
    "deactivate_with_input": 24,
    "get_events_with_input": 24,
    "get_events_no_buffer": 122,
    "get_events_small_buffer": 122,
    "get_stats_no_buffer": 122,
    "get_stats_small_buffer": 122,
    "get_stats_with_input": 24,
    "unknown_function": 1,
    "unknown_device_type": 1,
    "wrong_method": 1,
    "wrong_access": 1,
    "inject_no_input": 24,
    "inject_short_input": 24,
    "inject_length_mismatch": 24,
    "inject_count_zero": 87,
    "inject_count_too_big": 87,
    "inject_bad_kind": 87,
    "inject_reserved_nonzero": 87,
    "inject_exit_with_strings": 87,
    "inject_oversized_string": 87,
    "deactivate_twice": 22,
}


@pytest.mark.parametrize("name", sorted(BAD_INPUT))
def test_bad_input_rejected_precisely(selftest: dict[str, dict], name: str) -> None:
    assert_ok(selftest, name)
    assert selftest[name]["error"] == BAD_INPUT[name]
    assert selftest[name]["returned"] == 0


def test_keeps_working_after_bad_input(selftest: dict[str, dict]) -> None:
    assert_ok(selftest, "still_working_after_bad_input", "get_stats_large_buffer_exact_reply")
    assert selftest["get_stats_large_buffer_exact_reply"]["returned"] == 56


def test_single_client(selftest: dict[str, dict]) -> None:
    assert_ok(selftest, "second_client_refused")
    assert selftest["second_client_refused"]["error"] == 32


def test_fallback_and_close_deactivates(selftest: dict[str, dict]) -> None:
    assert_ok(selftest, "deactivate", "activate_classic", "reopen_after_close")


def test_unload_and_service_deletion(selftest: dict[str, dict]) -> None:
    assert_ok(
        selftest,
        "service_stop_unloads",
        "device_gone_after_unload",
        "event_gone_after_unload",
        "service_delete",
        "service_gone",
    )


def test_selftest_run_has_no_failures(selftest: dict[str, dict]) -> None:
    failed = [k for k, v in selftest.items() if isinstance(v, dict) and v.get("ok") is False]
    assert failed == []
    assert selftest["summary"]["failures"] == 0 and selftest["exit_code"]["value"] == 0
    assert selftest["summary"]["checks"] >= 60


def test_normal_build_refuses_callers_it_cannot_identify(normal: dict[str, dict]) -> None:
    """Issue 13 item 17: the no-security-context admission is in the self-test build only.

    Wine gives IRP_MJ_CREATE no security context; the normal build opened anyway. (That the
    normal build has no INJECT is shown by tests/driver's disassembly check.)
    """
    assert_ok(
        normal,
        "service_create",
        "service_start",
        "event_open_global",
        "device_refuses_unidentified_caller",
        "service_stop_unloads",
        "service_delete",
    )
    assert "device_open" not in normal
    assert normal["summary"]["failures"] == 0 and normal["exit_code"]["value"] == 0


def test_named_event_grants_clients_synchronize_only(normal: dict[str, dict]) -> None:
    """Issue 13 item 17: the event's DACL gave administrators EVENT_ALL_ACCESS.

    Shown with the normal build; the self-test build must also grant EVENT_MODIFY_STATE,
    because Wine checks the driver's own KeSetEvent against the DACL (Windows does not).
    """
    assert_ok(normal, "event_open_global", "event_refuses_modify_state")
    assert normal["event_refuses_modify_state"]["error"] == 5  # ERROR_ACCESS_DENIED


def test_stage_within_budget(wine_env: dict[str, str], normal: dict[str, dict]) -> None:
    elapsed = time.monotonic() - float(wine_env["PROCOBSRV_STAGE_START"])
    assert elapsed < STAGE_BUDGET_S, f"Wine stage took {elapsed:.0f} s"
