"""pytest plugin: what did this test spawn?

Installed with procobsrv, pytest loads it by itself (a ``pytest11`` entry point), and it
stays idle unless asked: nothing is monitored until a test requests the ``spawned``
fixture, or the run is given ``--procobsrv-report``. Only where plugins are not loaded
automatically (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``, or a source tree that is not installed)
does it take ``-p procobsrv.pytest_plugin``.

``spawned`` records every process the test spawned, however deep (the descendants of the
test process, by fork parentage: :mod:`procobsrv.descendants`), with argv, exit status and
duration::

    def test_clone(spawned, tmp_path):
        subprocess.run(["git", "clone", URL, tmp_path], check=True)
        assert spawned.ran("git", "clone")

``--procobsrv-report`` records the whole run and prints, per test, what each one spawned
(it spawns nothing between tests: each process goes to the test that was running when it
was created, and is forgotten once filed).

Recording needs what monitoring needs (root, or CAP_BPF + CAP_PERFMON, or a kernel that
lets this user join the process-events connector). Without it the fixture fails the test
with the reason, and ``--procobsrv-report`` stops the run with it: neither ever records
nothing in silence.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .descendants import Descendants, Spawned
from .errors import MonitorError
from .streams import monitor

if sys.platform != "win32":
    import resource

#: Seconds to wait for the events of what the test spawned (they are on their way through
#: the kernel's buffer and the pipeline when the test asks).
SETTLE = 5.0
#: Processes listed per test by ``--procobsrv-report`` (the rest are counted).
REPORT_LIMIT = 20
#: The last argument of the children :meth:`Recorder.settle` spawns (left out of records).
MARKER = "procobsrv-settle-marker"


class Recorder:
    """One subscription that follows the descendants of this process."""

    def __init__(self) -> None:
        self.descendants = Descendants()
        self._true = shutil.which("true")
        #: What the kernel counted of our children when the last settle ended (None: settle).
        self._settled_at: tuple[float, ...] | None = None
        self._monitoring = contextlib.ExitStack()
        try:
            self._monitoring.enter_context(monitor(self.descendants))
        except MonitorError as exc:
            raise MonitorError(f"procobsrv cannot record the processes tests spawn: {exc}") from exc

    def settle(self) -> None:
        """Until every event of what was spawned so far has been delivered: a marker child
        is spawned, and once its exit is seen, so are the events before it. Not again while
        nothing can have changed: no descendant runs, and this process has spawned nothing
        since the last settle (the queries of one ``assert`` line spawn one marker, not one
        each)."""
        if (
            self._settled_at is not None
            and not self.descendants.alive()
            and children_usage() == self._settled_at
        ):
            return
        if self._true is not None:
            marker = subprocess.Popen([self._true, MARKER])
        else:
            marker = subprocess.Popen([sys.executable, "-c", "", MARKER])
        marker.wait()
        if not self.descendants.wait_seen(marker.pid, exited=True, timeout=SETTLE):
            raise MonitorError(
                f"procobsrv: the events of this test's processes did not arrive in {SETTLE} s"
            )
        self._settled_at = children_usage()

    def processes(self) -> list[Spawned]:
        """What was spawned so far, in creation order (settled first; the markers left out)."""
        self.settle()
        lost = self.descendants.lost
        if lost:
            raise MonitorError(
                f"procobsrv lost {lost} process events: the record of spawned processes may be "
                "incomplete"
            )
        return [p for p in self.descendants.processes() if not _is_marker(p)]

    def close(self) -> None:
        self._monitoring.close()


def children_usage() -> tuple[float, ...] | None:
    """What the kernel counts of this process's children: their usage summed over those
    reaped (``RUSAGE_CHILDREN``: a child that ran at all faulted pages in). The same value
    twice means that nothing was spawned in between, by any thread, however short-lived.
    None while a child is not yet reaped (``/proc/self/task/*/children``), or where this
    cannot be read: then nothing is taken as unchanged."""
    if sys.platform == "win32":
        return None
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children", encoding="ascii") as children:
                if children.read(1):
                    return None
    except OSError:  # a thread that just ended, or a kernel without CONFIG_PROC_CHILDREN
        return None
    return tuple(resource.getrusage(resource.RUSAGE_CHILDREN))


def _is_marker(process: Spawned) -> bool:
    return process.execs > 0 and process.argv is not None and process.argv[-1:] == (MARKER,)


def _matches(argv: tuple[str, ...] | None, wanted: tuple[str, ...]) -> bool:
    """argv starts with ``wanted``; its program matches by file name too (``git`` is
    ``/usr/bin/git``)."""
    if not argv or len(argv) < len(wanted):
        return False
    program, *rest = wanted
    first = argv[0]
    if program not in (first, os.path.basename(first)):
        return False
    return list(argv[1 : len(wanted)]) == rest


class SpawnedProcesses:
    """What the ``spawned`` fixture gives: the processes the test has spawned so far."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder  # made for this test: it saw nothing from before

    @property
    def processes(self) -> list[Spawned]:
        """Every process spawned since the test began, in creation order."""
        return self._recorder.processes()

    def find(self, *argv: str) -> list[Spawned]:
        """The processes whose argv starts with ``argv`` (the program also by file name)."""
        return [p for p in self.processes if _matches(p.argv, argv)]

    def ran(self, *argv: str) -> bool:
        """Whether a process ran with an argv that starts with ``argv``: ``ran("git",
        "clone")`` is true of ``/usr/bin/git clone URL DIR``."""
        return bool(self.find(*argv))

    def commands(self) -> list[tuple[str, ...]]:
        """The argv of each process that ran a program (forks that did not are left out)."""
        return [p.argv for p in self.processes if p.execs and p.argv is not None]

    def __iter__(self) -> Iterator[Spawned]:
        return iter(self.processes)

    def __len__(self) -> int:
        return len(self.processes)

    def __repr__(self) -> str:
        return f"<spawned: {[' '.join(c) for c in self.commands()]}>"


@pytest.fixture
def spawned() -> Iterator[SpawnedProcesses]:
    """The processes this test spawns (all descendants of the test process): ``ran()``,
    ``find()``, ``commands()``, or iterate over them (:class:`procobsrv.descendants.Spawned`:
    argv, exit status, duration...)."""
    try:
        recorder = Recorder()
    except MonitorError as exc:
        refused = str(exc)
    else:
        refused = ""
    if refused:  # outside the except: the reason alone, not a chain of tracebacks
        pytest.fail(refused, pytrace=False)
    try:
        yield SpawnedProcesses(recorder)
    finally:
        recorder.close()


# -- --procobsrv-report ---------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("procobsrv")
    group.addoption(
        "--procobsrv-report",
        action="store_true",
        help="record the processes each test spawns and summarise them at the end "
        "(needs what procobsrv monitoring needs: root or CAP_BPF + CAP_PERFMON)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("procobsrv_report", False):
        config.pluginmanager.register(Report(), "procobsrv-report")


@dataclass
class Share:
    """What one test spawned, as filed by :class:`Report`."""

    nodeid: str
    #: Monotonic ns of the test's start and end (None while it runs).
    began: int
    ended: int | None = None
    #: How many of its processes ran a program.
    ran: int = 0
    #: The first REPORT_LIMIT of those, in creation order.
    shown: list[Spawned] = field(default_factory=list)

    def add(self, process: Spawned) -> None:
        if not process.execs:
            return  # a fork that ran no program of its own
        self.ran += 1
        bisect.insort(self.shown, process, key=lambda p: p.start_ns)
        del self.shown[REPORT_LIMIT:]


class Report:
    """Records the whole run; each test's share is what was created while it ran.

    Nothing is spawned between tests: at the end of each, the processes seen to exit so far
    are filed with the test that was running when each was created (by its start time), and
    forgotten; the processes of a test whose events come late are filed at a later test's
    end. One settle at the end of the run, then the rest is filed."""

    def __init__(self) -> None:
        try:
            self.recorder = Recorder()
        except MonitorError as exc:
            raise pytest.UsageError(f"--procobsrv-report: {exc}") from exc
        self.tests: list[Share] = []
        self._began: list[int] = []  # each test's start, to find a process's test by bisection

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, Any, None]:
        share = Share(item.nodeid, time.monotonic_ns())
        self.tests.append(share)
        self._began.append(share.began)
        yield
        share.ended = time.monotonic_ns()
        self.file(self.recorder.descendants.take_exited())

    def file(self, processes: Iterable[Spawned]) -> None:
        """Each process to the test that was running when it was created (none: between
        tests, or a marker)."""
        for process in processes:
            i = bisect.bisect_right(self._began, process.start_ns) - 1
            if i < 0 or _is_marker(process):
                continue
            share = self.tests[i]
            if share.ended is None or process.start_ns <= share.ended:
                share.add(process)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.recorder.close()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        self.recorder.settle()
        descendants = self.recorder.descendants
        self.file(descendants.take_exited())
        self.file(descendants.processes())  # still running
        terminalreporter.section("processes spawned per test (procobsrv)")
        if descendants.lost:
            terminalreporter.write_line(
                f"procobsrv lost {descendants.lost} process events: this report may be incomplete"
            )
        for share in self.tests:
            terminalreporter.write_line(f"{share.nodeid}: {share.ran} programs run")
            for p in share.shown:
                terminalreporter.write_line(f"    {describe(p)}")
            if share.ran > len(share.shown):
                terminalreporter.write_line(f"    ... and {share.ran - len(share.shown)} more")


def describe(process: Spawned) -> str:
    """``exit 0  0.012 s  git clone URL DIR``."""
    status = process.status
    state = "running" if status is None else f"exit {status}"
    duration = "" if process.duration is None else f"{process.duration:.3f} s"
    return f"{state:<9} {duration:>9}  {' '.join(process.argv or ('?',))}"
