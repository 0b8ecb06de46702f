"""``procobsrv serve`` as the tests run it: a root subprocess on a private socket, and raw
clients that speak (or do not speak) its protocol."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.availability import unavailable

PROCOBSRV = (sys.executable, "-m", "procobsrv")
#: How long the service may take to start (it loads the eBPF program).
START_S = 20.0


@dataclass
class Served:
    """A running service: its process, socket, and what it said on stderr."""

    proc: subprocess.Popen[str]
    socket: str
    said: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> str:
        """Signal it and wait; returns the rest of its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=timeout)
        return "".join(self.said) + err

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def private_directory() -> Path:
    """A directory only root may write and anyone may enter: where the socket goes."""
    if os.geteuid() != 0:
        unavailable("the service runs as root")
    directory = Path(tempfile.mkdtemp(prefix="procobsrv-serve-"))
    directory.chmod(0o755)
    return directory


def start(socket_path: str, *args: str) -> Served:
    proc = subprocess.Popen(
        [*PROCOBSRV, "serve", "--socket", socket_path, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    served = Served(proc, socket_path)
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        served.said.append(line)
        if not line:
            raise AssertionError(f"serve ended: {''.join(served.said)}")
        if "serving" in line:
            return served
    proc.kill()
    raise AssertionError(f"serve did not start: {''.join(served.said)}")


@contextmanager
def serving(directory: Path, *args: str) -> Iterator[Served]:
    served = start(str(directory / "events.sock"), *args)
    try:
        yield served
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.communicate()


class RawClient:
    """A client at the byte level: says hello (or not), reads records."""

    def __init__(self, path: str, *, hello: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buffer = b""
        if hello:
            self.sock.sendall(b'{"procobsrv":"events","protocol":1}\n')
            self.hello = self.record(5.0)

    def record(self, timeout: float) -> dict[str, Any] | None:
        """The next record, or None at the end of the connection or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            data = self.sock.recv(1 << 16)
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        record: dict[str, Any] = json.loads(line)
        return record

    def records_until(self, stop: Any, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Records up to and including the first for which ``stop(record)`` is true."""
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.record(deadline - time.monotonic())
            if record is None:
                break
            out.append(record)
            if stop(record):
                return out
        raise AssertionError(f"not found in {len(out)} records: {out[-3:]}")

    def closed_within(self, timeout: float) -> bool:
        """The service closed the connection within ``timeout`` (what it sent is read)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not select.select([self.sock], [], [], deadline - time.monotonic())[0]:
                return False
            try:
                data = self.sock.recv(1 << 16)
            except ConnectionResetError:
                return True
            if not data:
                return True
            self.buffer += data
        return False

    def close(self) -> None:
        self.sock.close()


def run_children(tag: str, count: int, prefix: tuple[str, ...] = ()) -> dict[int, list[str]]:
    """``count`` short children ``/bin/echo TAG N 'two words'`` (as ``prefix`` says): their
    pids (those of the echo processes) and exact command lines."""
    script = (
        "import subprocess, sys, json\n"
        "out = {}\n"
        f"for n in range({count}):\n"
        f"    argv = ['/bin/echo', {tag!r}, str(n), 'two words']\n"
        "    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)\n"
        "    child.wait()\n"
        "    out[child.pid] = argv\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run(
        [*prefix, sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return {int(pid): argv for pid, argv in json.loads(run.stdout).items()}


def first_of_tag() -> None:
    """As a client program (``-c``; argv: socket, tag): print the service's hello, then the
    command line of the first exec of either ``/bin/echo TAG ...`` or ``/bin/true end-TAG``."""
    path, tag = sys.argv[1:3]
    client = RawClient(path)
    print(json.dumps(client.hello), flush=True)
    end = ["/bin/true", f"end-{tag}"]

    def first(record: dict[str, Any]) -> bool:
        argv = record.get("command_line") or []
        return record.get("kind") == "exec" and (argv[:2] == ["/bin/echo", tag] or argv == end)

    print(json.dumps(client.records_until(first)[-1]["command_line"]))
