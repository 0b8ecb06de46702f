"""Which source a process gets, and what it is told when eBPF is out of reach."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from procobsrv import MonitorError
from procobsrv.linux import EbpfSource, bpfprog, libbpf
from procobsrv.linux.choice import open_named_source
from tests.fakes.availability import require_ebpf, require_tool, unavailable
from tests.fakes.kernel_probe import NOBODY, OK, Allowed, as_user, probe

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]

_PROBE = r"""
import json, logging, os, sys
logging.basicConfig(level=logging.WARNING, format="LOG %(levelname)s %(message)s")
from procobsrv import ApplicationScope, CallbackHandler, MonitorError
class Quiet(CallbackHandler):
    def on_process_event(self, item, param): pass
scope = ApplicationScope.get_instance(Quiet())
result = {"sources": [], "euid": os.geteuid()}
try:
    for _ in range(2):  # the second start must not warn again
        scope.start_monitoring()
        result["sources"].append(type(scope.source).__name__)
        scope.stop_monitoring()
except MonitorError as exc:
    result["auto_error"] = str(exc)
try:
    scope.start_monitoring(source="ebpf")
    result["explicit"] = type(scope.source).__name__
    scope.stop_monitoring()
except MonitorError as exc:
    result["explicit_error"] = str(exc)
print(json.dumps(result))
"""


def run_as(prefix: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def without_bpf_capabilities() -> list[str]:
    """Root without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (what a user without them has)."""
    if os.geteuid() != 0:
        unavailable("needs root to drop capabilities")
    setpriv = require_tool("setpriv")
    return [setpriv, "--bounding-set=-bpf,-perfmon,-sys_admin"]


def check_auto(prefix: list[str]) -> None:
    """``source="auto"`` as ``prefix`` gets what the kernel allows it, told once and clearly."""
    allowed = probe(*prefix)
    run = run_as(prefix, "-c", _PROBE)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    warnings = [line for line in run.stderr.splitlines() if line.startswith("LOG WARNING")]
    if allowed.ebpf == OK:
        assert result["sources"] == ["EbpfSource", "EbpfSource"] and not warnings, run.stderr
        return
    assert "CAP_BPF + CAP_PERFMON" in result["explicit_error"]
    assert "never to the system python3" in result["explicit_error"]
    if allowed.connector == OK:  # falls back, and says so once
        assert result["sources"] == ["ConnectorSource", "ConnectorSource"]
        assert len(warnings) == 1, run.stderr
        assert "short-lived" in warnings[0] and "CAP_BPF + CAP_PERFMON" in warnings[0]
        return
    # Neither: one error names both refusals and both grants, with no fallback warning first.
    assert result["sources"] == [] and not warnings, run.stderr
    error = result["auto_error"]
    assert "both sources of process events" in error and f"uid {result['euid']}" in error
    assert "loading of the eBPF program" in error and "bind to the process-events group" in error
    assert "CAP_BPF + CAP_PERFMON" in error and "CAP_NET_ADMIN" in error
    assert "setcap" not in error and "6.6" not in error


@pytest.mark.usefixtures("ebpf")
def test_auto_as_root_is_ebpf() -> None:
    source = open_named_source("auto")
    try:
        assert isinstance(source, EbpfSource)
    finally:
        source.close()


def test_without_the_capabilities_auto_falls_back_once_and_explicit_ebpf_names_them() -> None:
    require_ebpf()  # the kernel could: only the privilege is missing
    check_auto(without_bpf_capabilities())


@pytest.mark.usefixtures("ebpf")
def test_as_nobody_auto_gets_what_the_kernel_allows_and_errors_name_the_capabilities() -> None:
    check_auto(as_user(NOBODY))


@pytest.mark.usefixtures("ebpf")
def test_watch_says_in_one_line_that_it_fell_back() -> None:
    prefix = without_bpf_capabilities()
    assert probe(*prefix) == Allowed(connector=OK, ebpf="bpf: EPERM")
    run = run_as(prefix, "-m", "procobsrv", "-q", "watch", "--json", "--duration", "0.3")
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if "CAP_BPF" in line]
    assert len(lines) == 1 and "with the connector" in lines[0], run.stderr
    explicit = run_as(prefix, "-m", "procobsrv", "watch", "--source", "ebpf", "--duration", "0.3")
    assert explicit.returncode == 2 and "CAP_BPF + CAP_PERFMON" in explicit.stderr
    assert "Traceback" not in explicit.stderr


@pytest.mark.usefixtures("ebpf")
def test_watch_as_nobody_runs_or_ends_with_one_accurate_line() -> None:
    """As uid 65534: where the kernel refuses both sources, status 2 and one line saying
    what was refused and what grants it; where it allows one, the watch runs."""
    prefix = as_user(NOBODY)
    allowed = probe(*prefix)
    run = run_as(prefix, "-m", "procobsrv", "watch", "--json", "--duration", "0.3")
    if OK in (allowed.ebpf, allowed.connector):
        assert run.returncode == 0, run.stderr
        return
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1, run.stderr
    line = run.stderr.strip()
    assert line.startswith("procobsrv: the kernel refused this process (uid 65534) both sources")
    assert "CAP_BPF + CAP_PERFMON" in line and "CAP_NET_ADMIN" in line
    assert "setcap" not in line and "6.6" not in line


def test_unknown_source_name() -> None:
    with pytest.raises(MonitorError, match="use one of auto, ebpf, connector"):
        open_named_source("kprobe")


def test_no_btf_says_which_kernel_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bpfprog, "BTF_PATH", tmp_path / "vmlinux")
    with pytest.raises(MonitorError, match="CONFIG_DEBUG_INFO_BTF"):
        EbpfSource().open()


def test_missing_libbpf_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libbpf, "SONAME", "libbpf-absent.so.9")
    monkeypatch.setattr(libbpf, "_api", [])
    with pytest.raises(MonitorError, match="install the package libbpf1"):
        EbpfSource().open()


BAD_PROGRAM = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "Dual MIT/GPL";
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } events SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __type(key, int);
         __type(value, char[32]); } drops SEC(".maps");
const volatile unsigned long long wakeup_bytes = 1; /* the settings procobsrv writes */
const volatile unsigned int parent_filter = 0;
const volatile unsigned int exit_group_dead = 0;
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 8); __type(key, long);
         __type(value, char); } exits_sent SEC(".maps");
SEC("tp_btf/sched_process_fork")
int on_fork(unsigned long long *ctx)
{
	char buf[8] = {0};
	return buf[ctx[0] & 0xff]; /* out of bounds: the verifier refuses it */
}
"""


@pytest.mark.usefixtures("ebpf")
def test_verifier_rejection_keeps_its_log_in_the_file_it_names(tmp_path: Path) -> None:
    clang = require_tool("clang")
    source = tmp_path / "bad.bpf.c"
    source.write_text(BAD_PROGRAM)
    obj = tmp_path / "bad.bpf.o"
    arch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True).stdout
    includes = [f"-I/usr/include/{arch.strip()}"] if arch.strip() else []
    compile_bpf = [clang, "-O2", "-g", "-target", "bpf", *includes, "-c", str(source)]
    subprocess.run([*compile_bpf, "-o", str(obj)], check=True)
    with pytest.raises(MonitorError, match="refused the eBPF program") as caught:
        EbpfSource(object_path=obj).open()
    named = re.search(r"is in (\S+\.log)", str(caught.value))
    assert named is not None, caught.value
    path = Path(named.group(1))
    try:
        log = path.read_text()
        assert "BEGIN PROG LOAD LOG" in log and "processed " in log  # the verifier's own words
    finally:
        path.unlink()
