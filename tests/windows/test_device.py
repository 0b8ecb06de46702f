"""The device connection and record decode over the simulated ProcObsrv.sys."""

from __future__ import annotations

import ctypes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from procobsrv.errors import MonitorError
from procobsrv.events import EventKind
from procobsrv.windows import contract, winapi
from procobsrv.windows.device import (
    Device,
    DriverRecord,
    ProtocolError,
    decode_records,
    filetime_to_unix,
    split_command_line,
)
from tests.fakes.windows import FakeWindows, make_record

CREATE, EXIT = contract.KIND_CREATE, contract.KIND_EXIT


# --- decode ----------------------------------------------------------------------------------
def test_decode_records_and_strings() -> None:
    data = make_record(CREATE, 7, 100, 4, "\\??\\C:\\Windows\\notepad.exe", "notepad a.txt")
    data += make_record(EXIT, 8, 100, exit_status=0xC000013A)
    first, second = decode_records(data)
    assert (first.kind, first.sequence, first.pid, first.parent_pid) == (CREATE, 7, 100, 4)
    assert first.image == "\\??\\C:\\Windows\\notepad.exe"
    assert first.command_line == "notepad a.txt"
    assert (second.kind, second.sequence, second.exit_status) == (EXIT, 8, 0xC000013A)
    assert second.image == "" and second.command_line == ""


def test_decode_honours_odd_string_lengths_and_padding() -> None:
    data = make_record(CREATE, 1, 5, image="a", command_line="bc")  # 48 + 6 -> 56
    assert len(data) == 56
    (record,) = decode_records(data)
    assert (record.image, record.command_line) == ("a", "bc")


def test_decode_empty_answer() -> None:
    assert decode_records(b"") == []


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: d[:-8], "runs past"),  # the batch cut inside its last record
        (lambda d: d + b"\0" * 20, "cut short"),  # a stray tail shorter than a header
        (lambda d: b"\x30\0\0\0" + d[4:], "has size 48 for"),  # size too small for strings
        (lambda d: b"\x41\0\0\0" + d[4:], "has size 65"),  # not a multiple of 8
        (lambda d: d[:4] + b"\x09\0\0\0" + d[8:], "unknown kind 9"),
    ],
)
def test_decode_rejects_what_the_contract_forbids(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    data = make_record(CREATE, 1, 5, image="x.exe", command_line="x")
    with pytest.raises(ProtocolError, match=message):
        decode_records(mangle(data))


@given(
    st.lists(
        st.tuples(
            st.sampled_from([CREATE, EXIT]),
            st.integers(0, 2**32 - 1),
            st.text(max_size=40),
            st.text(max_size=60),
        ),
        max_size=20,
    )
)
def test_decode_roundtrip(records: list[tuple[int, int, str, str]]) -> None:
    data = b"".join(
        make_record(kind, i + 1, pid, 4, image, cmd)
        for i, (kind, pid, image, cmd) in enumerate(records)
    )
    decoded = decode_records(data)
    expected = [
        (
            kind,
            i + 1,
            pid,
            image.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace"),
        )
        for i, (kind, pid, image, _) in enumerate(records)
    ]
    assert [(r.kind, r.sequence, r.pid, r.image) for r in decoded] == expected


def test_to_item_create_and_exit() -> None:
    uptime = 10_000_000  # interrupt time: 1 s after boot
    booted = 116_444_736_000_000_000 + 5_000_000  # FILETIME of boot: 0.5 s after the epoch
    create = DriverRecord(
        CREATE, 1, uptime, 10, 4, 0, 0, "\\??\\C:\\a b\\x.exe", '"C:\\a b\\x.exe" -n "two words"'
    )
    item = create.to_item(wall_offset=booted)
    assert item.kind is EventKind.CREATED
    assert (item.process_id, item.parent_id, item.timestamp) == (10, 4, 1.5)
    assert item.image == "C:\\a b\\x.exe"
    assert item.name == "x.exe"
    assert item.command_line == ["C:\\a b\\x.exe", "-n", "two words"]
    assert item.start_ns == item.monotonic_ns == uptime * 100  # ns on the interrupt clock
    exit_ = DriverRecord(EXIT, 2, uptime + 10, 10, 0, 3, 0, "", "").to_item(item.start_ns)
    assert (exit_.kind, exit_.exit_code, exit_.start_ns) == (EventKind.EXITED, 3, item.start_ns)
    assert exit_.key == item.key
    unknown = DriverRecord(EXIT, 3, uptime, 11, 0, 0, contract.RECORD_EXIT_STATUS_UNKNOWN, "", "")
    assert unknown.to_item().exit_code is None
    classic = DriverRecord(CREATE, 4, uptime, 12, 4, 0, contract.RECORD_NO_DETAILS, "", "")
    assert (classic.to_item().image, classic.to_item().command_line) == (None, None)


def test_filetime_to_unix() -> None:
    assert filetime_to_unix(116_444_736_000_000_000) == 0.0


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        ("notepad.exe", ["notepad.exe"]),
        ("notepad.exe  a.txt\tb", ["notepad.exe", "a.txt", "b"]),
        ('"C:\\Program Files\\x.exe" "a b" c', ["C:\\Program Files\\x.exe", "a b", "c"]),
        ('x "a\\"b"', ["x", 'a"b']),
        ('x a\\\\\\"b', ["x", 'a\\"b']),
        ('x "a\\\\" b', ["x", "a\\", "b"]),
        ("x a\\b\\\\c", ["x", "a\\b\\\\c"]),
        ('x "a""b"', ["x", 'a"b']),
        ('x ""', ["x", ""]),
        ("C:\\dir\\x.exe", ["C:\\dir\\x.exe"]),
        ("x ", ["x"]),
    ],
)
def test_split_command_line_like_commandlinetoargvw(line: str, argv: list[str]) -> None:
    assert split_command_line(line) == argv


# --- the device ------------------------------------------------------------------------------
def test_open_and_close(fake: FakeWindows) -> None:
    fake.start_driver_directly()
    device = Device(fake.api())
    device.open()
    args = fake.calls[0][1]
    assert args[0] == "\\\\.\\ProcObsrv"
    assert args[1] == winapi.GENERIC_READ | winapi.GENERIC_WRITE
    assert args[4] == winapi.OPEN_EXISTING
    device.close()
    device.close()
    assert fake.names() == ["CreateFileW", "CloseHandle"]
    assert fake.open_handles() == []


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda f: None, r"driver is not loaded \(procobsrv driver install"),
        (lambda f: setattr(f, "admin", False), "administrators only"),
        (lambda f: f.driver.__setattr__("open_handle", 1), "one client at a time"),
    ],
)
def test_open_failures_explain(fake: FakeWindows, setup, message: str) -> None:  # type: ignore[no-untyped-def]
    if message != r"driver is not loaded \(procobsrv driver install":
        fake.start_driver_directly()
    setup(fake)
    with pytest.raises(MonitorError, match=message) as info:
        Device(fake.api()).open()
    assert isinstance(info.value.__cause__, winapi.WinApiError)


def test_abi_check(fake: FakeWindows) -> None:
    driver = fake.start_driver_directly()
    device = Device(fake.api())
    device.open()
    stats = device.check_abi()
    assert (stats.abi_version, stats.size) == (2, 56)
    call = fake.calls[-1][1]
    assert call[1] == contract.IOCTL_GET_STATS and call[3] == 0
    driver.abi_version = 1
    with pytest.raises(MonitorError, match="ABI version 1, this procobsrv needs 2"):
        device.check_abi()


def test_activate_sends_the_contract_input(fake: FakeWindows) -> None:
    driver = fake.start_driver_directly()
    device = Device(fake.api())
    device.open()
    device.activate()
    assert driver.active
    _, code, inbuf, inlen, outbuf, outlen, _, overlapped = fake.calls[-1][1]
    assert (code, inlen, outbuf, outlen, overlapped) == (contract.IOCTL_ACTIVATE, 16, None, 0, None)
    request = contract.ActivateInput.from_buffer_copy(inbuf._obj)
    assert (request.size, request.abi_version, request.flags, request.reserved) == (16, 2, 0, 0)
    with pytest.raises(MonitorError, match="cannot activate"):
        device.activate()  # already active
    device.deactivate()
    assert not driver.active


def test_activate_revision_mismatch(fake: FakeWindows) -> None:
    driver = fake.start_driver_directly()
    driver.abi_version = 7
    device = Device(fake.api())
    device.open()
    with pytest.raises(MonitorError, match="refused ABI version 2"):
        device.activate()


def test_read_batches_cut_at_the_buffer_boundary(fake: FakeWindows) -> None:
    """Records that do not fit stay queued for the next read; none is split or lost."""
    driver = fake.start_driver_directly()
    long_cmd = "x" * (contract.MAX_COMMAND_LINE_CHARS)
    for i in range(5):
        driver.notify(CREATE, 100 + i, 4, "C:\\p.exe", long_cmd)  # 4144 bytes each
    device = Device(fake.api(), buffer_size=contract.MIN_EVENTS_BUFFER + 3000)
    device.open()
    seen: list[list[int]] = []
    while True:
        records, returned = device.read()
        seen.append([r.sequence for r in records])
        assert returned == sum(contract.record_size(8, 2048) for _ in records)
        if device.drained(returned):
            break
    # Two 4160-byte records fit in 9192 bytes, a third does not: it waits for the next read.
    # After a read of one, 5032 bytes were free, less than the largest record: read once more.
    assert seen == [[1, 2], [3, 4], [5], []]
    assert not driver.event.signalled


def test_read_rejects_a_lying_driver(fake: FakeWindows, mocker) -> None:  # type: ignore[no-untyped-def]
    fake.start_driver_directly()
    device = Device(fake.api(), buffer_size=contract.MIN_EVENTS_BUFFER)
    device.open()

    def too_much(handle, code, inbuf, inlen, outbuf, outlen, returned, overlapped):  # type: ignore[no-untyped-def]
        returned._obj.value = outlen + 8
        return 1

    fake.mocks["DeviceIoControl"].side_effect = too_much
    with pytest.raises(ProtocolError, match="claims"):
        device.read()


def test_buffer_must_hold_the_largest_record(fake: FakeWindows) -> None:
    with pytest.raises(ValueError, match="at least 6192"):
        Device(fake.api(), buffer_size=4096)


def test_open_event(fake: FakeWindows) -> None:
    fake.start_driver_directly()
    device = Device(fake.api())
    handle = device.open_event()
    assert fake.calls[-1][1] == (winapi.SYNCHRONIZE, False, "Global\\ProcObsrvProcessEvent")
    assert fake.objects[handle][0] == "event"
    fake.fail("OpenEventW", winapi.ERROR_FILE_NOT_FOUND)
    with pytest.raises(MonitorError, match="cannot open the driver's event"):
        device.open_event()


def test_stats_size_mismatch_is_a_protocol_error(fake: FakeWindows) -> None:
    fake.start_driver_directly()
    device = Device(fake.api())
    device.open()

    def short(handle, code, inbuf, inlen, outbuf, outlen, returned, overlapped):  # type: ignore[no-untyped-def]
        returned._obj.value = 40
        return 1

    fake.mocks["DeviceIoControl"].side_effect = short
    with pytest.raises(MonitorError, match="does not speak ABI version 2"):
        device.check_abi()
    assert ctypes.sizeof(contract.Stats) == 56
