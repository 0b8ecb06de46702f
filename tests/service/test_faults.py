"""``procobsrv serve`` under bad clients and bad ends: garbage, half a hello, a client that
never reads, 200 clients coming and going, the service killed or stopped under its clients,
a second service, unsafe directories."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from procobsrv import CallbackHandler, watch
from procobsrv.errors import MonitorError
from procobsrv.events import QueuedItem
from procobsrv.linux.service_source import ServiceSource
from procobsrv.scope import ApplicationScope
from procobsrv.service import wire
from tests.fakes.availability import require_ebpf
from tests.fakes.service import RawClient, private_directory, run_children, serving, start

pytestmark = pytest.mark.kernel


def is_exec_of(argv: list[str]) -> Any:
    return lambda r: r.get("kind") == "exec" and r.get("command_line") == argv


def serve(path: str) -> subprocess.CompletedProcess[str]:
    """``procobsrv serve --socket PATH`` where it is expected to refuse at once."""
    return subprocess.run(
        [sys.executable, "-m", "procobsrv", "serve", "--socket", path],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_garbage_and_half_a_hello_are_cut_off_and_the_others_served() -> None:
    require_ebpf()
    with serving(private_directory()) as served:
        good = RawClient(served.socket)
        garbage = RawClient(served.socket, hello=False)
        garbage.sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        half = RawClient(served.socket, hello=False)
        half.sock.sendall(b'{"procobsrv":"ev')
        chatty = RawClient(served.socket)
        chatty.sock.sendall(b'{"kind":"please send me root\'s events"}\n')
        assert garbage.closed_within(2.0)
        assert b'"kind":"error"' in garbage.buffer and b"not JSON" in garbage.buffer
        assert chatty.closed_within(2.0)
        assert b"sends nothing after its hello" in chatty.buffer
        assert half.closed_within(wire.HELLO_TIMEOUT + 5.0)
        assert b"no hello line within" in half.buffer
        marker = ["/bin/true", f"still-served-{os.getpid()}"]
        subprocess.run(marker, check=True)
        assert good.records_until(is_exec_of(marker))[-1]["command_line"] == marker
        assert served.proc.poll() is None


def test_a_client_that_never_reads_loses_only_its_own_events_counted_exactly() -> None:
    """Two root clients; one reads, one does not while 1,000 processes run. Between a start and
    an end marker, the stalled one's events plus the losses it is told of equal what the
    reader got (each with the losses it was told of); the service's memory stayed bounded."""
    require_ebpf()
    with serving(private_directory(), "--client-queue", "300") as served:
        reader = RawClient(served.socket)
        stalled = RawClient(served.socket)
        first = ["/bin/true", f"first-{os.getpid()}"]
        subprocess.run(first, check=True)
        reader.records_until(is_exec_of(first))
        before = served.rss_kb()
        marker = ["/bin/true", f"marker-{os.getpid()}"]
        got: list[list[dict[str, Any]]] = []
        reading = threading.Thread(
            target=lambda: got.append(reader.records_until(is_exec_of(marker), 120))
        )
        reading.start()
        run_children(f"storm-{os.getpid()}", 1000)
        subprocess.run(marker, check=True)
        reading.join(130)
        (read,) = got
        grown = served.rss_kb() - before
        stalled.records_until(is_exec_of(first))  # what came before the storm
        late = stalled.records_until(is_exec_of(marker), 60)
        lost = sum(r["count"] for r in late if r["kind"] == "lost")
        read_lost = sum(r["count"] for r in read if r["kind"] == "lost")
        stalled_events = len([r for r in late if r["kind"] != "lost"])
        read_events = len([r for r in read if r["kind"] != "lost"])
        # each told exactly: events + losses = what was offered to both between the markers
        assert stalled_events + lost == read_events + read_lost
        # the stalled one lost its own; the reader, at most what its own pace cost it (none
        # on a quiet machine: the others' CPU may slow this test's reading thread)
        assert lost > 0 and read_lost < lost
        assert grown < 64 << 10, f"the service grew {grown} KiB"


def test_200_clients_coming_and_going_leave_the_service_as_it_was() -> None:
    require_ebpf()
    with serving(private_directory()) as served:
        first = RawClient(served.socket)
        first.close()
        time.sleep(0.2)
        fds = served.fds()
        for n in range(200):
            client = RawClient(served.socket, hello=n % 2 == 0)
            client.close()
        keeper = RawClient(served.socket)
        marker = ["/bin/true", f"after-200-{os.getpid()}"]
        subprocess.run(marker, check=True)
        keeper.records_until(is_exec_of(marker))
        keeper.close()
        time.sleep(0.5)
        assert served.fds() == fds
        assert served.proc.poll() is None


class Failing(CallbackHandler):
    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.told = threading.Event()

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        pass

    def on_error(self, error: BaseException, param: Any) -> None:
        self.error = error
        self.told.set()


@pytest.mark.parametrize(
    ("sig", "said"),
    [(signal.SIGKILL, "without saying why (killed?)"), (signal.SIGTERM, "service stopped")],
)
def test_the_service_ending_ends_each_clients_stream_with_a_clear_error(
    sig: int, said: str
) -> None:
    require_ebpf()
    with serving(private_directory()) as served:
        stream = watch(source=ServiceSource(socket_path=served.socket))
        # a second subscriber of the same scope: a handler, told by on_error
        handler = Failing()
        subscription = ApplicationScope.shared().subscribe(handler)
        try:
            served.proc.send_signal(sig)
            started = time.monotonic()
            with pytest.raises(MonitorError, match=re.escape(said)):
                for _ in stream:
                    pass
            assert handler.told.wait(5.0) and said in str(handler.error)
            assert time.monotonic() - started < 5.0
        finally:
            subscription.close()
            stream.close()


def test_a_second_service_is_refused_and_a_dead_ones_socket_is_replaced() -> None:
    require_ebpf()
    directory = private_directory()
    path = str(directory / "events.sock")
    with serving(directory) as served:
        second = serve(path)
        assert second.returncode == 2 and "another procobsrv service" in second.stderr
        served.stop(signal.SIGKILL)
    assert Path(path).is_socket()  # left behind by the killed one
    again = start(path)
    try:
        RawClient(path).close()
    finally:
        again.stop()
    assert not Path(path).exists()  # removed by the service that made it


def test_a_socket_listened_on_by_someone_else_is_not_replaced() -> None:
    directory = private_directory()
    path = str(directory / "events.sock")
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(path)
    other.listen(1)
    try:
        run = serve(path)
    finally:
        other.close()
    assert run.returncode == 2 and "already listens" in run.stderr


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777])
def test_a_directory_others_could_write_is_refused(tmp_path: Path, mode: int) -> None:
    directory = private_directory()
    directory.chmod(mode)
    run = serve(str(directory / "e.sock"))
    assert run.returncode == 2 and "writable by others" in run.stderr
    assert not (directory / "e.sock").exists()


def test_a_linked_directory_is_refused(tmp_path: Path) -> None:
    directory = private_directory()
    link = directory / "link"
    link.symlink_to(directory)
    run = serve(str(link / "e.sock"))
    assert run.returncode == 2 and "not a directory" in run.stderr


def test_no_service_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(
        MonitorError, match=r"no procobsrv service listens on .*sudo procobsrv serve"
    ):
        ServiceSource(socket_path=str(tmp_path / "none.sock")).open()


def test_a_service_run_by_another_user_is_not_trusted(tmp_path: Path) -> None:
    """A socket served by uid 65534 (who could lie about any process): refused."""
    from tests.fakes.kernel_probe import NOBODY, as_user

    prefix = as_user(NOBODY)
    directory = private_directory()
    directory.chmod(0o777)
    path = str(directory / "fake.sock")
    fake = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-c",
            "import socket, sys, time\n"
            "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)\n"
            "print('up', flush=True); c, _ = s.accept(); time.sleep(5)\n",
            path,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "up"
        with pytest.raises(MonitorError, match="served by uid 65534, not root: not trusted"):
            ServiceSource(socket_path=path).open()
    finally:
        fake.kill()
        fake.wait()
