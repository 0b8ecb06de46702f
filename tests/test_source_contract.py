"""The KernelSource contract, checked against every source (psutil's ``test_contracts.py``).

What every :class:`~procobsrv.platform.KernelSource` promises (its docstring states it): its
dependencies are constructor keywords; ``close()`` is safe before ``open()`` and twice;
``open()`` on an open source raises MonitorError and leaves it as it was; a closed source
opens again; ``wait_handle`` and ``fetch_batch`` of a source that is not open raise
MonitorError; ``fetch_batch`` with nothing ready returns an empty Batch at once; ``close()``
releases every fd, mapping and handle; ``Batch.lost`` is exact, also after a reopen; event
times are on the source's clock.

Each source is a :class:`Subject`: how to make one, what resources the process holds, how to
make one process start with the source open, and how to make its kernel drop events so that
the count can be checked exactly (each kernel drops differently: a full ring buffer, a full
socket buffer, a full driver queue). The sources:

- ``connector``: ConnectorSource on the real kernel;
- ``ebpf``: EbpfSource on the real kernel (root with BTF; in CI nothing may be skipped);
- ``replay``: ConnectorSource fed by a scripted socket (its decoder and item building are
  the real code; the script numbers messages as the kernel does, per CPU);
- ``driver``: DriverSource over the simulated Windows (it loads ProcObsrv.sys through the
  Service Control Manager and unloads it on close, as ConsCtl did).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from procobsrv.errors import MonitorError
from procobsrv.events import EventKind, QueuedItem
from procobsrv.platform import Batch, KernelSource
from tests.fakes.availability import require_connector, require_tool, unavailable

#: Wall time is the monotonic stamp plus an offset read once at open; NTP slewing in between
#: and the read itself may move it this far (seconds).
WALL_TOLERANCE_S = 0.05
#: "At once": a fetch with nothing ready must not wait for anything (seconds, on a busy CI).
AT_ONCE_S = 0.5
#: How long a real kernel may take to deliver what a test started (seconds).
DELIVERY_S = 10.0
#: The connector's socket buffers: a reference that holds every message of a test, and one
#: so small that a burst of children overflows it (the kernel doubles it, to some 10 messages).
REFERENCE_RCVBUF = 64 << 20
TINY_RCVBUF = 4096
OVERFLOW_CHILDREN = 200
#: How long to wait for a message that may have been lost (seconds).
LATE_S = 1.0
#: Events the Linux kernels report per child that runs and ends: fork, exec, exit.
EVENTS_PER_CHILD = 3
#: Children run with the eBPF consumer stalled: more records than its small ring holds.
EBPF_STALLED_CHILDREN = 400
EBPF_SMALL_RING = 64 << 10
#: The simulated Windows boots an hour before CLOCK_MONOTONIC's zero (interrupt time, 100 ns).
WINDOWS_BOOT_OFFSET = 3_600 * 10**7


class Subject:
    """One kind of KernelSource and what the contract checks need of its kernel."""

    #: Only the test's own events reach the source (else other processes' events may too).
    private = True
    #: A process seen starting has its start event's time as ``start_ns`` (the eBPF source
    #: has the kernel's own start time of the task, taken just before the fork event).
    start_is_event = True

    def new(self) -> KernelSource:
        """A source, not yet open."""
        raise NotImplementedError

    def held(self) -> object:
        """What this process holds of the kernel now (compared before open and after close)."""
        raise NotImplementedError

    def spawn(self) -> int:
        """Make one process start (the source is open); its pid."""
        raise NotImplementedError

    def check_loss(self) -> None:
        """Make the kernel drop events and check that ``Batch.lost`` counts them exactly."""
        source = self.new()
        source.open()
        try:
            self.overflow(source)
        finally:
            source.close()

    def overflow(self, source: KernelSource) -> None:
        """With ``source`` open: make the kernel drop events, check the count."""
        raise NotImplementedError

    def check_loss_after_reopen(self) -> None:
        """Check that a reopened source counts its own losses exactly: none of the events
        of the time it was closed, none of an earlier session's counts."""
        raise NotImplementedError


# -- the Linux sources on the real kernel ------------------------------------------------


def linux_resources() -> tuple[frozenset[str], tuple[str, ...]]:
    """This process's fds and its mappings of BPF objects (the eBPF ring buffer, .bss)."""
    fds = frozenset(os.listdir("/proc/self/fd"))
    with open("/proc/self/maps") as maps:
        bpf = tuple(sorted(line.split()[0] for line in maps if "anon_inode:bpf" in line))
    return fds, bpf


def run_true(tag: str, cpu: int | None = None) -> int:
    """Run ``/bin/true`` to its end (pinned to ``cpu`` if given); its pid."""
    argv = ["/bin/true", tag]
    if cpu is not None:
        argv = [require_tool("taskset"), "-c", str(cpu), *argv]
    child = subprocess.Popen(argv)
    child.wait()
    return child.pid


class ConnectorSubject(Subject):
    private = False  # every process of the machine reaches the connector

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            unavailable("the process-events connector needs Linux")
        require_connector()

    def new(self) -> KernelSource:
        from procobsrv.linux import ConnectorSource

        return ConnectorSource()

    def held(self) -> object:
        return linux_resources()

    def spawn(self) -> int:
        return run_true("contract")

    def check_loss(self) -> None:
        """A source with a tiny socket buffer, stalled during a burst, against a reference
        listener with a huge one (the technique of ``test_kernel_overflow.py``, in one
        process): per CPU, what the reference heard between the first and the last message
        the source heard, and the source did not, is exactly what the source must report."""
        from procobsrv.linux import ConnectorSource
        from tests.fakes.connector import RecordingDecoder

        reference = ConnectorSource(rcvbuf=REFERENCE_RCVBUF, read_proc=False)
        reference.decoder = heard = RecordingDecoder()
        source = ConnectorSource(rcvbuf=TINY_RCVBUF, read_proc=False)
        source.decoder = small = RecordingDecoder()
        reference.open()
        try:
            source.open()
            try:
                lost = hear_every_cpu(source, small).lost  # a first message per CPU
                for i in range(OVERFLOW_CHILDREN):  # nobody reads the source meanwhile
                    run_true(f"overflow-{i}")
                lost += hear_every_cpu(source, small).lost  # a last one: the gaps show
            finally:
                source.close()
            everything = Batch()
            drain(reference, everything)
            assert everything.lost == 0  # it heard every message
        finally:
            reference.close()
        windows: dict[int, list[int]] = {}
        for cpu, seq, *_ in small.seen:
            if cpu < small.cpus:  # a message naming no real CPU has no sequence
                windows.setdefault(cpu, []).append(seq)
        missed = 0
        for cpu, seqs in windows.items():
            first, last, have = seqs[0], seqs[-1], set(seqs)
            missed += sum(
                1 for c, s, *_ in heard.seen if c == cpu and first < s < last and s not in have
            )
        assert lost > 0, "the tiny socket buffer did not overflow"
        assert lost == missed

    def check_loss_after_reopen(self) -> None:
        # Nothing overflows a 16 MiB socket buffer here, so the exact count is 0, also for
        # the events of the time between two subscriptions: the source was not listening.
        # taskset puts events on every CPU (the kernel numbers messages per CPU) before,
        # between and after the two sessions, so that a sequence carried over shows.
        source = self.new()
        cpus = sorted(os.sched_getaffinity(0))
        lost = 0
        for session in range(2):
            source.open()
            try:
                pids = {run_true(f"contract-{session}", cpu) for cpu in cpus}
                lost += fetch_until(source, lambda got, p=pids: exited(got.items) >= p).lost
            finally:
                source.close()
            for cpu in cpus:
                run_true("unseen", cpu)
        assert lost == 0


def hear_every_cpu(source: KernelSource, decoder: Any) -> Batch:
    """Run a process on each CPU until the source hears a message from that CPU (one may be
    lost while the buffer is full: then again); everything fetched meanwhile."""
    total = Batch()
    for cpu in sorted(os.sched_getaffinity(0)):
        deadline = time.monotonic() + DELIVERY_S
        while True:
            mark = len(decoder.seen)
            run_true("flush", cpu)
            late = time.monotonic() + LATE_S
            while time.monotonic() < late:
                drain(source, total)
                if any(seen[0] == cpu for seen in decoder.seen[mark:]):
                    break
                time.sleep(0.005)
            else:
                assert time.monotonic() < deadline, f"no message from cpu {cpu} got through"
                continue
            break
    return total


def drain(source: KernelSource, total: Batch) -> None:
    """Fetch into ``total`` until a fetch finds nothing."""
    while True:
        batch = source.fetch_batch()
        total.items += batch.items
        total.lost += batch.lost
        if not batch.items and not batch.lost:
            return


def exited(items: list[QueuedItem]) -> set[int]:
    return {i.process_id for i in items if i.kind is EventKind.EXITED}


class EbpfSubject(Subject):
    start_is_event = False

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            unavailable("the eBPF source needs Linux")
        from tests.fakes.availability import require_ebpf

        require_ebpf()

    def new(self, **kw: Any) -> KernelSource:
        from procobsrv.linux import EbpfSource

        # Only this process's children: other processes of the machine stay out of counts.
        return EbpfSource(parent_filter=os.getpid(), read_proc=False, **kw)

    def held(self) -> object:
        return linux_resources()

    def spawn(self) -> int:
        return run_true("contract")

    def check_loss(self) -> None:
        source = self.new(ring_size=EBPF_SMALL_RING)
        source.open()
        try:
            self.overflow(source)
        finally:
            source.close()

    def overflow(self, source: KernelSource) -> None:
        # The consumer stalls while the children run: the small ring fills, the program
        # counts every record it could not write.
        pids = {run_true(f"fill-{i}") for i in range(EBPF_STALLED_CHILDREN)}
        expected = EVENTS_PER_CHILD * len(pids)
        batch = fetch_until(source, lambda got: len(got.items) + got.lost >= expected)
        assert {i.process_id for i in batch.items} <= pids  # the filter let nothing else in
        assert 0 < batch.lost < expected  # it did overflow, and some got through
        assert len(batch.items) + batch.lost == expected

    def check_loss_after_reopen(self) -> None:
        source = self.new(ring_size=EBPF_SMALL_RING)
        source.open()
        try:
            self.overflow(source)
            source.close()
            run_true("unseen")
            # Reopened: a new program with its own counters; nothing is lost now.
            source.open()
            pid = run_true("after-reopen")
            batch = fetch_until(source, lambda got: pid in exited(got.items))
            assert batch.lost == 0
            assert len(batch.items) == EVENTS_PER_CHILD
        finally:
            source.close()


def fetch_until(
    source: KernelSource, done: Callable[[Batch], bool], deadline_s: float = DELIVERY_S
) -> Batch:
    """Fetch until ``done(everything fetched)`` and then until nothing more is ready;
    everything fetched, as one Batch."""
    total = Batch()
    deadline = time.monotonic() + deadline_s
    while True:
        batch = source.fetch_batch()
        total.items += batch.items
        total.lost += batch.lost
        finished = done(total)
        if finished and not batch.items and not batch.lost:
            return total
        if not finished and time.monotonic() > deadline:
            got = f"{len(total.items)} items, {total.lost} lost"
            raise AssertionError(f"not delivered in {deadline_s} s: {got}")
        if not batch.items:
            time.sleep(0.005)


# -- the connector fed by a script -------------------------------------------------------


def replay_source() -> tuple[KernelSource, Any]:
    """A ConnectorSource and the scripted socket it reads (the replay seam, in one place)."""
    from tests.fakes.connector import replay_source as connector_over_replay

    return connector_over_replay()


class ReplaySubject(Subject):
    """The script is a kernel with one CPU: it numbers its messages as the kernel does,
    and the numbers go on between two subscriptions, as the kernel's do."""

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            unavailable("the connector source needs Linux (recvmmsg)")
        self._replay: Any = None
        self._seq = 0
        self._pids = iter(range(1000, 100_000))

    def new(self) -> KernelSource:
        source, self._replay = replay_source()
        return source

    def held(self) -> object:
        return linux_resources()

    def fork(self, *, dropped: bool = False) -> int:
        """A fork of a new process stamped now (``dropped``: the kernel could not send it)."""
        from procobsrv.linux import connector_abi as abi
        from tests.fakes.connector import fork_data, message

        pid, parent = next(self._pids), os.getpid()
        self._seq += 1
        if not dropped:
            union = fork_data(pid, parent)
            datagram = message(abi.PROC_EVENT_FORK, union, seq=self._seq, ts=time.monotonic_ns())
            self._replay.publish([datagram])
        return pid

    def spawn(self) -> int:
        return self.fork()

    def overflow(self, source: KernelSource) -> None:
        first = self.fork()
        self.fork(dropped=True)
        self.fork(dropped=True)
        last = self.fork()
        batch = source.fetch_batch()
        assert [i.process_id for i in batch.items] == [first, last]
        assert batch.lost == 2  # the sequence numbers in between never arrived
        self.fork()
        assert source.fetch_batch().lost == 0

    def check_loss_after_reopen(self) -> None:
        source = self.new()
        source.open()
        try:
            self.overflow(source)
            source.close()
            for _ in range(5):
                self.fork(dropped=True)  # sent while nobody listened: not lost to this source
            source.open()
            pid = self.fork()
            batch = source.fetch_batch()
            assert [i.process_id for i in batch.items] == [pid]
            assert batch.lost == 0
        finally:
            source.close()


# -- ProcObsrv.sys over the simulated Windows --------------------------------------------


class DriverSubject(Subject):
    def __init__(self, mocker: Any, tmp_path: Path) -> None:
        from procobsrv.windows.installer import DriverService
        from tests.fakes.windows import FakeWindows

        fake = self.fake = FakeWindows(mocker)
        fake.interrupt_offset = WINDOWS_BOOT_OFFSET
        fake.system_directory = str(tmp_path / "Windows" / "System32")
        (tmp_path / "Windows" / "System32" / "drivers").mkdir(parents=True)
        sys_file = tmp_path / "ProcObsrv.sys"
        sys_file.write_bytes(b"MZ")
        fake.files.add(str(sys_file))
        self._service = lambda: DriverService(sys_file, api=fake.api(), sleep=lambda s: None)
        self._pids = iter(range(1000, 100_000))

    def new(self) -> KernelSource:
        from procobsrv.windows.source import DriverSource

        return DriverSource(api=self.fake.api(), service=self._service())

    def held(self) -> object:
        driver = self.fake.driver
        return self.fake.open_handles(), sorted(self.fake.services), driver is not None

    def notify(self, kind: int, pid: int, *, drop: bool = False) -> None:
        assert self.fake.driver is not None, "the source loads the driver at open"
        self.fake.driver.notify(kind, pid, drop=drop)

    def spawn(self) -> int:
        from procobsrv.windows import contract

        pid = next(self._pids)
        self.notify(contract.KIND_CREATE, pid)
        return pid

    def overflow(self, source: KernelSource) -> None:
        # The driver numbers every notification, also the ones its full queue dropped.
        from procobsrv.windows.contract import KIND_CREATE, KIND_EXIT

        self.notify(KIND_CREATE, 10)
        self.notify(KIND_CREATE, 11, drop=True)
        self.notify(KIND_CREATE, 12, drop=True)
        self.notify(KIND_CREATE, 13)
        batch = source.fetch_batch()
        assert [i.process_id for i in batch.items] == [10, 13]
        assert batch.lost == 2
        self.notify(KIND_EXIT, 13, drop=True)  # after the last delivered: the counter knows
        assert source.fetch_batch().lost == 1

    def check_loss_after_reopen(self) -> None:
        from procobsrv.windows.contract import KIND_CREATE

        source = self.new()
        source.open()
        try:
            self.overflow(source)
            source.close()
            source.open()  # loads the driver again: its counters start again
            self.notify(KIND_CREATE, 20, drop=True)
            assert source.fetch_batch().lost == 1
            self.notify(KIND_CREATE, 21)
            batch = source.fetch_batch()
            assert [i.process_id for i in batch.items] == [21]
            assert batch.lost == 0
        finally:
            source.close()


# -- the checks ----------------------------------------------------------------------------

SUBJECTS = ["connector", "ebpf", "replay", "driver"]


@pytest.fixture(params=SUBJECTS)
def subject(request: pytest.FixtureRequest, mocker: Any, tmp_path: Path) -> Subject:
    name = request.param
    if name == "connector":
        return ConnectorSubject()
    if name == "ebpf":
        return EbpfSubject()
    if name == "replay":
        return ReplaySubject()
    return DriverSubject(mocker, tmp_path)


@pytest.fixture
def opened(subject: Subject) -> Iterator[KernelSource]:
    source = subject.new()
    source.open()
    try:
        yield source
    finally:
        source.close()


def created(source: KernelSource, pid: int, deadline_s: float = DELIVERY_S) -> QueuedItem:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for item in source.fetch_batch().items:
            if item.kind is EventKind.CREATED and item.process_id == pid:
                return item
        time.sleep(0.005)
    raise AssertionError(f"no CREATED event for pid {pid}")


def test_close_is_safe_before_open_and_twice(subject: Subject) -> None:
    before = subject.held()
    source = subject.new()
    source.close()
    source.close()
    assert subject.held() == before


def test_a_closed_source_opens_again(subject: Subject) -> None:
    before = subject.held()
    source = subject.new()
    for _ in range(2):
        source.open()
        try:
            pid = subject.spawn()
            assert created(source, pid).process_id == pid
        finally:
            source.close()
        assert subject.held() == before
    source.close()
    assert subject.held() == before


def test_open_on_an_open_source_raises_and_changes_nothing(subject: Subject) -> None:
    before = subject.held()
    source = subject.new()
    source.open()
    try:
        during = subject.held()
        with pytest.raises(MonitorError, match="already open"):
            source.open()
        assert subject.held() == during  # nothing opened a second time
        pid = subject.spawn()
        assert created(source, pid).process_id == pid  # still subscribed
    finally:
        source.close()
    assert subject.held() == before


def test_wait_handle_and_fetch_need_an_open_source(subject: Subject) -> None:
    source = subject.new()
    for _ in range(2):  # not opened yet, then closed
        with pytest.raises(MonitorError, match="not open"):
            source.wait_handle  # noqa: B018 (the property is what is checked)
        with pytest.raises(MonitorError, match="not open"):
            source.fetch_batch()
        source.open()
        source.close()


def test_fetch_with_nothing_ready_returns_an_empty_batch_at_once(
    subject: Subject, opened: KernelSource
) -> None:
    # The connector hears every process of the machine: it has nothing ready once the fetch
    # it drained returns empty; for the other sources nothing is ever ready here.
    deadline = time.monotonic() + DELIVERY_S
    while True:
        start = time.monotonic()
        batch = opened.fetch_batch()
        assert time.monotonic() - start < AT_ONCE_S
        assert isinstance(batch, Batch)
        if subject.private or (not batch.items and not batch.lost):
            break
        assert time.monotonic() < deadline, "the connector never ran dry"
    assert (batch.items, batch.lost) == ([], 0)


def test_close_releases_everything(subject: Subject) -> None:
    before = subject.held()
    source = subject.new()
    source.open()
    assert subject.held() != before  # it does hold something: the check below means it
    pid = subject.spawn()
    created(source, pid)
    source.close()
    assert subject.held() == before


def test_batch_lost_is_exact(subject: Subject) -> None:
    subject.check_loss()


def test_a_reopened_source_counts_only_its_own_losses(subject: Subject) -> None:
    subject.check_loss_after_reopen()


def test_event_times_are_on_the_sources_clock(subject: Subject, opened: KernelSource) -> None:
    before, wall_before = opened.monotonic_now_ns(), time.time()
    pid = subject.spawn()
    after, wall_after = opened.monotonic_now_ns(), time.time()
    item = created(opened, pid)
    assert before <= item.monotonic_ns <= after, (before, item.monotonic_ns, after)
    if subject.start_is_event:
        assert item.start_ns == item.monotonic_ns  # a process seen starting: start = its event
    else:
        assert before <= item.start_ns <= item.monotonic_ns  # started, then seen forked
    assert wall_before - WALL_TOLERANCE_S <= item.timestamp <= wall_after + WALL_TOLERANCE_S


def test_the_clock_is_monotonic_in_ns(opened: KernelSource) -> None:
    first = opened.monotonic_now_ns()
    time.sleep(0.02)
    second = opened.monotonic_now_ns()
    assert isinstance(first, int)
    assert 10_000_000 <= second - first < 10_000_000_000  # ns, not 100 ns or us units
