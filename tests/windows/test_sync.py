"""Win32 event/mutex/waiter, and the framework's monitor cycle running on them."""

from __future__ import annotations

import threading
import time

import pytest

from procobsrv.container import QueueContainer
from procobsrv.platform import Platform
from procobsrv.process_monitor import ProcessThreadMonitor
from procobsrv.windows import contract, winapi
from procobsrv.windows.source import DriverSource
from procobsrv.windows.sync import Win32Event, Win32Mutex, Win32Waiter, wait_milliseconds
from tests.fakes.windows import FakeWindows


def test_event_is_manual_reset(fake: FakeWindows) -> None:
    event = Win32Event(fake.api())
    assert fake.calls[0] == ("CreateEventW", (None, True, False, None))
    assert not event.is_set()
    event.set()
    assert event.is_set() and event.is_set()  # waiting does not reset it
    event.clear()
    assert not event.is_set()
    wait = "WaitForSingleObject"
    assert fake.names()[1:] == [wait, "SetEvent", wait, wait, "ResetEvent", wait]
    assert all(args[1] == 0 for name, args in fake.calls if name == "WaitForSingleObject")
    event.close()
    event.close()
    assert fake.names().count("CloseHandle") == 1
    with pytest.raises(ValueError, match="closed"):
        event.set()


def test_mutex_context_manager(fake: FakeWindows) -> None:
    mutex = Win32Mutex(fake.api())
    with mutex:
        pass
    assert fake.names() == ["CreateMutexW", "WaitForSingleObject", "ReleaseMutex"]
    assert fake.calls[0][1] == (None, False, None)
    assert fake.calls[1][1][1] == winapi.INFINITE
    mutex.close()
    assert fake.open_handles() == []


def test_mutex_acquire_release_is_recursive(fake: FakeWindows) -> None:
    """acquire()/release() are the context manager's two halves; ownership counts up."""
    mutex = Win32Mutex(fake.api())
    mutex.acquire()
    mutex.acquire()
    mutex.release()
    mutex.release()
    assert fake.names() == ["CreateMutexW"] + ["WaitForSingleObject"] * 2 + ["ReleaseMutex"] * 2
    with pytest.raises(winapi.WinApiError, match=r"ReleaseMutex failed: \[WinError 288\]"):
        mutex.release()  # a third release: this thread no longer owns it
    mutex.close()
    assert fake.open_handles() == []


def test_mutex_excludes_other_threads(fake: FakeWindows) -> None:
    mutex = Win32Mutex(fake.api())
    inside = []
    crowds: list[int] = []  # how many threads were inside, seen by each entry; checked below

    def worker(n: int) -> None:
        for _ in range(50):
            with mutex:
                inside.append(n)
                crowds.append(len(inside))
                inside.pop()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mutex.close()
    assert crowds == [1] * 4 * 50


def test_release_by_a_non_owner_raises(fake: FakeWindows) -> None:
    mutex = Win32Mutex(fake.api())
    with pytest.raises(winapi.WinApiError, match=r"ReleaseMutex failed: \[WinError 288\]"):
        mutex.release()


def test_waiter_returns_lowest_signalled_index_or_none(fake: FakeWindows) -> None:
    api = fake.api()
    a, b, c = Win32Event(api), Win32Event(api), Win32Event(api)
    waiter = Win32Waiter([a.wait_handle, b.wait_handle, c.wait_handle], api)
    assert waiter.wait(0) is None
    c.set()
    b.set()
    assert waiter.wait(None) == 1
    count, array, wait_all, ms = fake.calls[-1][1]
    assert (count, list(array), wait_all, ms) == (
        3,
        [a.handle, b.handle, c.handle],
        False,
        winapi.INFINITE,
    )
    b.clear()
    assert waiter.wait(0.001) == 2
    assert fake.calls[-1][1][3] == 1
    waiter.close()
    with pytest.raises(ValueError):
        waiter.wait(0)


def test_waiter_translates_failure(fake: FakeWindows) -> None:
    waiter = Win32Waiter([0x777], fake.api())
    with pytest.raises(winapi.WinApiError, match="WaitForMultipleObjects failed"):
        waiter.wait(0)


def test_waiter_handle_count_limits(fake: FakeWindows) -> None:
    with pytest.raises(ValueError, match="1 to 64"):
        Win32Waiter([], fake.api())
    with pytest.raises(ValueError, match="1 to 64"):
        Win32Waiter(list(range(65)), fake.api())


@pytest.mark.parametrize(
    ("timeout", "ms"),
    [(None, 0xFFFFFFFF), (0, 0), (-1, 0), (0.0001, 1), (1.5, 1500), (1e9, 0xFFFFFFFE)],
)
def test_wait_milliseconds(timeout: float | None, ms: int) -> None:
    assert wait_milliseconds(timeout) == ms


def test_monitor_cycle_on_win32_objects(fake: FakeWindows) -> None:
    """ProcessThreadMonitor waits on {shutdown, driver event}, fetches, appends; the
    QueueContainer's mutex and event are kernel32 objects: the article's design."""
    api = fake.api()
    platform = Platform(
        name="windows-fake",
        new_event=lambda: Win32Event(api),
        new_mutex=lambda: Win32Mutex(api),
        new_waiter=lambda handles: Win32Waiter(handles, api),
        new_source=lambda: DriverSource(api=api, load_driver=False),
    )
    driver = fake.start_driver_directly()
    source = platform.new_source()
    source.open()
    container = QueueContainer(platform)
    monitor = ProcessThreadMonitor(platform, source, container)
    consumer = Win32Waiter([container.element_available.wait_handle], api)
    monitor.start()
    try:
        received = []
        lost = 0
        for pid in range(1, 31):
            driver.notify(contract.KIND_CREATE, pid, 4, "C:\\notepad.exe", "notepad")
            if pid % 10 == 0:
                driver.notify(contract.KIND_EXIT, pid, drop=True)
            fake.signal_driver_event()
        deadline = time.monotonic() + 5
        while len(received) < 30 and time.monotonic() < deadline:
            if consumer.wait(0.5) == 0:
                items, n, _ = container.drain()
                received += items
                lost += n
        assert [i.process_id for i in received] == list(range(1, 31))
        assert lost <= 3
    finally:
        monitor.stop()
    assert monitor.error is None
    _, lost_at_end, _ = container.drain()
    # Each drop reported exactly once: a drop after the last record delivered is known
    # from the driver's counter (at the latest by the final fetch on shutdown).
    assert lost + lost_at_end == 3
    # The monitor really waited on both handles with WaitForMultipleObjects.
    waits = [args for name, args in fake.calls if name == "WaitForMultipleObjects"]
    assert any(
        list(args[1]) == [monitor.shutdown.wait_handle, source.wait_handle] for args in waits
    )
    assert "CreateMutexW" in fake.names() and "ReleaseMutex" in fake.names()
    consumer.close()
    monitor.close()
    container.element_available.close()
    source.close()
