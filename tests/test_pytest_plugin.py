"""The pytest plugin, run by pytest itself (pytester): inner tests spawn real children and
the ``spawned`` fixture and ``--procobsrv-report`` say what they ran; as uid 65534 the
fixture fails the test with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from procobsrv.pytest_plugin import MARKER, Recorder
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


@pytest.fixture
def outer() -> Iterator[Recorder]:
    """Follows the inner pytest run (a child of this process) and its children."""
    recorder = Recorder()
    try:
        yield recorder
    finally:
        recorder.close()


def inner_markers(outer: Recorder) -> int:
    """The settle markers the inner run spawned (this process's own are left out)."""
    outer.settle()
    return sum(
        1
        for p in outer.descendants.processes()
        if p.argv is not None and p.argv[-1:] == (MARKER,) and p.ppid != os.getpid()
    )


BATCH = """
import subprocess

def test_queries(spawned):
    subprocess.run(["true", "first"], check=True)
    for _ in range(10):  # 50 queries, one settle: nothing was spawned between them
        assert spawned.ran("true", "first") and len(spawned) == 1 and spawned.commands()
        assert [p.status for p in spawned] == [0] and "first" in repr(spawned)
    subprocess.run(["true", "second"], check=True)  # spawned since: the next query settles
    assert spawned.ran("true", "second") and len(spawned) == 2
    sleeper = subprocess.Popen(["sleep", "0.2"])
    assert spawned.find("sleep")[0].alive  # settles: a child not reaped yet
    sleeper.wait()
    assert spawned.find("sleep")[0].status == 0  # settles: it was running
    assert spawned.find("sleep")[0].duration >= 0.2  # nothing changed since: no settle
"""


def test_the_queries_of_one_batch_settle_once(pytester: pytest.Pytester, outer: Recorder) -> None:
    """On int every query spawned a marker child and waited for its events (here 55): a
    batch of queries with nothing spawned between them takes one, a new spawn or a child
    that may still change (running, or not reaped) one more."""
    pytester.makepyfile(test_batch=BATCH)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert inner_markers(outer) == 4


SUITE = """
import subprocess
import pytest

@pytest.mark.parametrize("n", range(5))
def test_spawns(n):
    for _ in range(30):
        subprocess.run(["true", f"from-test-{n}"], check=True)

def test_followed(request):
    followed = request.config.pluginmanager.get_plugin("procobsrv-report").recorder.descendants
    print("followed:", len(followed.processes()))
    subprocess.run(["true", "last-test"], check=True)
"""


def test_report_spawns_nothing_between_tests_and_forgets_what_it_filed(
    pytester: pytest.Pytester, outer: Recorder
) -> None:
    """On int the report settled after every test (a marker child each) and kept every
    process of the run: here 150 + 5 markers when the last test began. Now one settle at
    the end; what was filed is forgotten (at most the late events of the tests just before
    are still followed), and each test still gets its own processes."""
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("--procobsrv-report", "-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=6)
    out = result.stdout.str()
    followed = int(out.split("followed: ")[1].split()[0])
    assert followed <= 60, out
    section = out[out.index("processes spawned per test (procobsrv)") :]
    for n in range(5):
        assert f"test_suite.py::test_spawns[{n}]: 30 programs run" in section, section
        shown = section.split(f"test_spawns[{n}]: ")[1].split("::")[0]
        assert shown.count(f"from-test-{n}") == 20 and "... and 10 more" in shown
        assert "from-test-" not in shown.replace(f"from-test-{n}", ""), shown
    assert "test_suite.py::test_followed: 1 programs run" in section
    assert inner_markers(outer) == 1


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
