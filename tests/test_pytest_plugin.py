"""The pytest plugin, run by pytest itself (pytester): inner tests spawn real children and
the ``spawned`` fixture and ``--procobsrv-report`` say what they ran; as uid 65534 the
fixture fails the test with the reason."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.fakes.kernel_probe import NOBODY, OK, as_user, probe

pytest_plugins = ["pytester"]
pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("connector")]

INNER = """
import subprocess, sys

def test_children_and_grandchildren(spawned):
    subprocess.run(["sh", "-c", "ls / >/dev/null; (sleep 0.2; exit 4) & wait"], check=True)
    assert spawned.ran("sh", "-c")
    assert spawned.ran("ls", "/")
    (sleeper,) = spawned.find("sleep", "0.2")
    assert sleeper.status == 0 and sleeper.duration >= 0.2
    subshells = [p for p in spawned if not p.execs]
    assert subshells and subshells[0].status == 4   # the ( ... ) subshell: a fork, exit 4
    assert not spawned.ran("git")
    assert ("ls", "/") in spawned.commands()

def test_full_path_and_prefix(spawned):
    subprocess.run(["/bin/echo", "hello", "world"], stdout=subprocess.DEVNULL, check=True)
    assert spawned.ran("echo", "hello")
    assert spawned.ran("/bin/echo", "hello", "world")
    assert not spawned.ran("echo", "world")

def test_a_failing_assert_about_what_ran(spawned):
    subprocess.run(["true"], check=True)
    assert spawned.ran("false")

def test_without_the_fixture():
    subprocess.run(["true", "no-fixture-marker"], check=True)
"""


def test_spawned_records_what_each_test_ran(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess(
        "-p", "procobsrv.pytest_plugin", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_a_failing_assert_about_what_ran*", "*assert False*"])


def test_report_summarises_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_subprocess("--procobsrv-report", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    out = result.stdout.str()
    section = out[out.index("processes spawned per test (procobsrv)") :]
    assert "test_inner.py::test_without_the_fixture: 1 programs run" in section, section
    assert "exit 0" in section and "true no-fixture-marker" in section
    assert "sleep 0.2" in section and "procobsrv-settle-marker" not in section


THREADS = """
import threading

def test_threads():
    print("threads:", sorted(t.name for t in threading.enumerate()))
"""


def test_idle_unless_asked(pytester: pytest.Pytester) -> None:
    """Installed, the plugin is loaded by every run, and monitors nothing unless asked: no
    monitoring thread runs beside the test (as they do with --procobsrv-report)."""
    pytester.makepyfile(test_plain=THREADS)
    idle = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    idle.assert_outcomes(passed=1)
    assert "procobsrv-0.1.0" in idle.stdout.str()  # loaded, as installed plugins are
    assert "procobsrv" not in idle.stdout.str().split("threads:")[1].split("\n")[0]
    assert "processes spawned per test" not in idle.stdout.str()
    asked = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "--procobsrv-report")
    asked.assert_outcomes(passed=1)
    assert "procobsrv" in asked.stdout.str().split("threads:")[1].split("\n")[0]


def test_as_nobody_the_fixture_fails_with_the_reason() -> None:
    prefix = as_user(NOBODY)
    with tempfile.TemporaryDirectory(prefix="procobsrv-plugin-") as where:
        tests = Path(where)
        tests.chmod(0o777)  # pytest's tmp_path is root's alone: uid 65534 could not enter it
        (tests / "test_inner.py").write_text(INNER)
        run = run_as_nobody(prefix, tests)
    if OK in (probe(*prefix).connector, probe(*prefix).ebpf):  # this kernel lets uid 65534 in
        assert run.returncode == 0, run.stdout
        return
    assert run.returncode == 1, run.stdout
    assert "1 error" in run.stdout, run.stdout
    line = next(line for line in run.stdout.splitlines() if "cannot record" in line)
    assert "procobsrv cannot record the processes tests spawn" in line
    assert "uid 65534" in run.stdout and "CAP_BPF + CAP_PERFMON" in run.stdout
    assert "Traceback" not in run.stdout


def run_as_nobody(prefix: list[str], tests: Path) -> subprocess.CompletedProcess[str]:
    pytest_args = ["-p", "procobsrv.pytest_plugin", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "pytest", *pytest_args, "-k", "children", str(tests)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tests,
    )
