"""DriverSource: open/close sequences, fetch, loss accounting, over the simulated driver."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from procobsrv.errors import MonitorError
from procobsrv.events import EventKind
from procobsrv.windows import contract, winapi
from procobsrv.windows.installer import DriverService
from procobsrv.windows.source import DriverSource
from tests.fakes.windows import FakeWindows

CREATE, EXIT = contract.KIND_CREATE, contract.KIND_EXIT


def ioctls(fake: FakeWindows) -> list[int]:
    return [args[1] for name, args in fake.calls if name == "DeviceIoControl"]


def test_open_sequence_and_close(fake: FakeWindows) -> None:
    driver = fake.start_driver_directly()
    source = DriverSource(api=fake.api(), load_driver=False)
    source.open()
    assert driver.active
    assert fake.names()[0] == "CreateFileW"
    assert ioctls(fake) == [
        contract.IOCTL_GET_STATS,  # ABI check
        contract.IOCTL_GET_EVENTS,  # drain what a previous client left
        contract.IOCTL_GET_STATS,  # baseline sequence and drop counter
        contract.IOCTL_ACTIVATE,
        contract.IOCTL_GET_STATS,
    ]
    assert "OpenEventW" in fake.names()
    assert fake.objects[source.wait_handle][1] is driver.event
    fake.calls.clear()
    source.close()
    source.close()
    assert fake.names() == ["DeviceIoControl", "CloseHandle", "CloseHandle"]
    assert ioctls(fake) == [contract.IOCTL_DEACTIVATE]
    assert not driver.active
    assert fake.open_handles() == []


def test_fetch_converts_and_pairs_exit_with_start(fake: FakeWindows) -> None:
    driver = fake.start_driver_directly()
    with DriverSource(api=fake.api(), load_driver=False) as source:
        assert source.fetch_batch().items == []
        driver.notify(CREATE, 200, 100, "\\??\\C:\\Windows\\notepad.exe", "notepad.exe x.txt")
        driver.notify(EXIT, 200, exit_status=1)
        batch = source.fetch_batch()
        created, exited = batch.items
        assert batch.lost == 0
        assert (created.kind, created.process_id, created.parent_id) == (
            EventKind.CREATED,
            200,
            100,
        )
        assert created.image == "C:\\Windows\\notepad.exe"
        assert created.command_line == ["notepad.exe", "x.txt"]
        assert (exited.kind, exited.exit_code, exited.key) == (EventKind.EXITED, 1, created.key)
        assert not driver.event.signalled


def test_stale_records_of_a_previous_client_are_discarded(fake: FakeWindows) -> None:
    driver = fake.start_driver_directly()
    driver.notify(CREATE, 1)
    driver.notify(EXIT, 1)
    driver.active = True  # a crashed client left it active
    with DriverSource(api=fake.api(), load_driver=False) as source:
        assert driver.active
        driver.notify(CREATE, 2)
        assert [i.process_id for i in source.fetch_batch().items] == [2]


def test_loss_from_gaps_and_drop_counter_is_counted_once(fake: FakeWindows) -> None:
    driver = fake.start_driver_directly()
    with DriverSource(api=fake.api(), load_driver=False) as source:
        driver.notify(CREATE, 10)
        driver.notify(CREATE, 11, drop=True)
        driver.notify(CREATE, 12, drop=True)
        driver.notify(CREATE, 13)
        batch = source.fetch_batch()
        assert [i.process_id for i in batch.items] == [10, 13]
        assert batch.lost == 2  # seen both as a sequence gap and in the drop counter
        # A drop after the last delivered record: only the counter knows it yet.
        driver.notify(EXIT, 13, drop=True)
        batch = source.fetch_batch()
        assert (batch.items, batch.lost) == ([], 1)
        # The next record reveals that drop as a gap: it must not be reported again.
        driver.notify(CREATE, 14)
        batch = source.fetch_batch()
        assert [i.process_id for i in batch.items] == [14]
        assert batch.lost == 0
        assert source.stats is not None and source.stats.dropped == 3


def test_fetch_is_bounded_in_a_storm(fake: FakeWindows) -> None:
    driver = fake.start_driver_directly()
    with DriverSource(
        api=fake.api(), load_driver=False, buffer_size=contract.MIN_EVENTS_BUFFER
    ) as source:
        for pid in range(2000):
            driver.notify(CREATE, pid, image="C:\\x.exe")
        first = source.fetch_batch()
        assert 0 < len(first.items) < 2000
        assert driver.event.signalled  # the monitor comes straight back for the rest
        rest = []
        while driver.queue:
            rest += source.fetch_batch().items
        assert [i.process_id for i in first.items + rest] == list(range(2000))


def test_open_failure_releases_everything(fake: FakeWindows) -> None:
    fake.start_driver_directly()
    fake.fail("OpenEventW", winapi.ERROR_ACCESS_DENIED)
    source = DriverSource(api=fake.api(), load_driver=False)
    with pytest.raises(MonitorError, match="cannot open the driver's event"):
        source.open()
    assert fake.open_handles() == []
    assert fake.driver is not None and not fake.driver.active


def test_activation_failure_releases_everything(fake: FakeWindows) -> None:
    fake.start_driver_directly()
    source = DriverSource(api=fake.api(), load_driver=False)
    fake.mocks["DeviceIoControl"].side_effect = _fail_activate(fake)
    with pytest.raises(MonitorError, match="cannot activate"):
        source.open()
    assert fake.open_handles() == []


def _fail_activate(fake: FakeWindows):  # type: ignore[no-untyped-def]
    real = fake._DeviceIoControl

    def ioctl(handle, code, *rest):  # type: ignore[no-untyped-def]
        if code == contract.IOCTL_ACTIVATE:
            return fake._fail(winapi.ERROR_GEN_FAILURE)
        return real(handle, code, *rest)

    return ioctl


def test_not_loaded_driver_is_a_clear_error(fake: FakeWindows) -> None:
    with pytest.raises(MonitorError, match="driver is not loaded"):
        DriverSource(api=fake.api(), load_driver=False).open()


def test_loads_the_driver_like_conscl_and_unloads_it(fake: FakeWindows, tmp_path: Path) -> None:
    sys_file = tmp_path / "ProcObsrv.sys"
    sys_file.write_bytes(b"MZ")
    fake.files.add(str(sys_file))
    service = DriverService(sys_file, api=fake.api(), sleep=lambda s: None)
    with DriverSource(api=fake.api(), service=service) as source:
        assert fake.services["ProcObsrv"].state == winapi.SERVICE_RUNNING
        fake.driver.notify(CREATE, 5)  # type: ignore[union-attr]
        assert [i.process_id for i in source.fetch_batch().items] == [5]
    assert fake.services == {} and fake.driver is None
    assert fake.open_handles() == []


def test_driver_is_unloaded_when_the_device_cannot_be_used(
    fake: FakeWindows, tmp_path: Path
) -> None:
    sys_file = tmp_path / "ProcObsrv.sys"
    sys_file.write_bytes(b"MZ")
    fake.files.add(str(sys_file))
    fake.fail("CreateFileW", winapi.ERROR_ACCESS_DENIED)
    service = DriverService(sys_file, api=fake.api(), sleep=lambda s: None)
    with pytest.raises(MonitorError, match="administrators only"):
        DriverSource(api=fake.api(), service=service).open()
    assert fake.services == {} and fake.driver is None


def test_close_runs_every_step_and_reports_the_failure(fake: FakeWindows) -> None:
    # Issue 13 item 18: a failing device close skipped closing the event handle.
    driver = fake.start_driver_directly()
    source = DriverSource(api=fake.api(), load_driver=False)
    source.open()
    fake.fail("CloseHandle", winapi.ERROR_INVALID_HANDLE)  # the device's handle
    with pytest.raises(MonitorError, match=r"closing the driver source failed.*CloseHandle"):
        source.close()
    assert [kind for kind in fake.open_handles()] == ["device"]  # the event was closed anyway
    assert not driver.active
    source.close()  # nothing left to do, nothing raised


def test_start_times_of_processes_are_bounded(fake: FakeWindows) -> None:
    # Issue 13 item 18: every start was kept until its exit, so lost exits grew it forever.
    driver = fake.start_driver_directly()
    with DriverSource(api=fake.api(), load_driver=False, max_tracked=100) as source:
        for pid in range(1000, 1300):
            driver.notify(CREATE, pid)
        driver.notify(EXIT, 1299)
        items = source.fetch_batch().items
        assert items[-1].start_ns == items[-2].start_ns  # the exit still pairs with its start
        assert source.tracked == 99  # bounded, and the exit dropped its entry
        driver.notify(EXIT, 1000)  # evicted long ago: its start is unknown, not wrong
        assert source.fetch_batch().items[0].start_ns == 0


def test_lifetime_of_a_live_windows_process_is_positive(fake: FakeWindows) -> None:
    # Issue 13 item 16: the driver's wall-clock FILETIME was passed on as monotonic_ns, so
    # ProcessNode.lifetime of a process started 5 s earlier came out as -1.34e10 s.
    from procobsrv.process_tree import ProcessTree

    driver = fake.start_driver_directly()
    tree = ProcessTree()
    with DriverSource(api=fake.api(), load_driver=False) as source:
        driver.notify(CREATE, 321, 4, "\\??\\C:\\Windows\\notepad.exe", "notepad.exe")
        for item in source.fetch_batch().items:
            tree.on_process_event(item, None)
        node = tree.find(321)
        assert node is not None
        time.sleep(0.05)
        lifetime = node.lifetime
        assert lifetime is not None
        assert 0.05 <= lifetime < 5.0


def test_setting_the_wall_clock_does_not_move_events(fake: FakeWindows) -> None:
    # Issue 13 item 16: stamps on the settable wall clock went back when it was set back.
    driver = fake.start_driver_directly()
    with DriverSource(api=fake.api(), load_driver=False) as source:
        driver.notify(CREATE, 1)
        fake.wall_skew = -3_600 * 10**7  # an administrator sets the clock back an hour
        driver.notify(EXIT, 1)
        created, exited = source.fetch_batch().items
    assert 0 <= exited.monotonic_ns - created.monotonic_ns < 1_000_000_000
    assert 0 <= exited.timestamp - created.timestamp < 1.0
    assert abs(created.timestamp - time.time()) < 1.0
