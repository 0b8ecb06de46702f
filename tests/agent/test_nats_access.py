"""agent/nats_access.py against a real nats-server that takes TLS clients only (a throwaway
CA made with openssl) and two users, an NKey and a password: `collect` and `watch --output`
reach it with each kind of credential; a password never shows where other users look."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from procobsrv import MonitorError
from procobsrv.agent import RecordMaker
from procobsrv.agent.jetstream import JetStreamSink
from procobsrv.agent.nats_access import PASSWORD_ENV, access, hidden, parse_servers
from procobsrv.events import EventKind, new_item
from tests.fakes.availability import require_tool
from tests.fakes.nats import (
    NatsServer,
    Secured,
    collect,
    operated,
    publish,
    records,
    secured,
    stream_contents,
)


@pytest.fixture
def secure(nats_servers: list[NatsServer], tmp_path: Path) -> Secured:
    require_tool("openssl")
    return secured(nats_servers, tmp_path)


def test_the_servers_and_the_credentials_come_apart() -> None:
    assert parse_servers("nats://u:p%40ss@a:1,b:2") == (["nats://a:1", "nats://b:2"], "u", "p@ss")
    assert parse_servers("tls://a:4222") == (["tls://a:4222"], None, None)
    assert hidden("nats://u:secret@a:1,b:2") == "nats://u:***@a:1,b:2"
    assert hidden("nats://a:1") == "nats://a:1"
    for wrong in ("nats://a:99999", "nats://a:0", "nats://:1", "http://a:1", "nats://"):
        with pytest.raises(MonitorError):
            parse_servers(wrong)


def collected(secure: Secured, *options: str, env: dict[str, str] | None = None) -> list[str]:
    """What `collect` (TLS, and ``options``) reads from the secured server: the tags."""
    done = collect(secure.server.url, *secure.tls, *options, "--duration", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return [json.loads(line)["command_line"][0] for line in done.stdout.splitlines()]


def test_collect_reaches_a_tls_server_with_an_nkey_or_a_password(
    secure: Secured, tmp_path: Path
) -> None:
    """Each way of giving credentials works; none gives the password on the command line."""
    publish(
        [secure.server.url],
        records(2, tag="secured"),
        tls=secure.tls_context(),
        user=secure.user,
        password=secure.password,
    )
    password_file = tmp_path / "password"
    password_file.write_text(secure.password + "\n")
    ways = {
        "nkey": (["--nats-nkey", str(secure.nkey_seed)], None),
        "file": (["--nats-user", secure.user, "--nats-password-file", str(password_file)], None),
        "env": (["--nats-user", secure.user], {PASSWORD_ENV: secure.password}),
    }
    for name, (options, env) in ways.items():
        assert collected(secure, "--durable", name, *options, env=env) == ["secured"] * 2


def test_collect_reaches_an_operator_mode_server_with_a_creds_file(
    nats_servers: list[NatsServer], tmp_path: Path
) -> None:
    """A `.creds` file (user JWT + NKey seed, as `nsc` writes it) for a server that trusts an
    operator: `collect --nats-creds` reads what was published with the same file."""
    creds = operated(nats_servers, tmp_path)
    url = nats_servers[-1].url
    publish([url], records(2, tag="with-creds"), user_credentials=str(creds))
    done = collect(url, "--nats-creds", str(creds), "--duration", "2")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    tags = [json.loads(line)["command_line"][0] for line in done.stdout.splitlines()]
    assert tags == ["with-creds"] * 2


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ([], "certificate verify failed"),  # no CA given: the server's is not trusted
        (["--nats-user", "collector"], "authorization violation"),  # no password
    ],
)
def test_a_refused_connection_is_said_at_once_with_its_cause(
    secure: Secured, options: list[str], said: str
) -> None:
    """Refused by the server: the cause at WARNING or ERROR while collect runs, not a
    silent wait; stopped, it names the cause again."""
    tls = [] if "certificate" in said else secure.tls
    done = collect(secure.server.url, *tls, *options, "--duration", "3")
    assert "Traceback" not in done.stderr, done.stderr
    logged = [line for line in done.stderr.splitlines() if " nats" in line.lower()]
    assert logged and logged[0].startswith("procobsrv: error: "), done.stderr
    assert said in done.stderr.lower(), done.stderr


@pytest.mark.kernel
def test_a_password_in_the_url_shows_nowhere_another_user_looks(
    secure: Secured, tmp_path: Path
) -> None:
    """`watch --output nats://user:PASSWORD@...`: a warning says how to give it instead; once
    it watches, the password is gone from /proc/PID/cmdline, so from what any monitor reads
    there (a second agent, started after it, reports its exit with its command line: no
    password in the stream); the summary line does not show it either. (What the kernel
    captured at its exec, before it could hide anything, is why the warning says to use a
    file or the environment.)"""
    url = f"nats://{secure.user}:{secure.password}@{secure.server.url.removeprefix('nats://')}"
    password_file = tmp_path / "password"
    password_file.write_text(secure.password)
    tool = [sys.executable, "-m", "procobsrv", "watch"]
    first = subprocess.Popen(
        [*tool, "--output", url, *secure.tls], stderr=subprocess.PIPE, text=True
    )
    second = None
    try:
        assert first.stderr is not None
        said = ""
        while "watching" not in said:
            line = first.stderr.readline()
            assert line, f"the first watch ended before watching: {said}"
            said += line
        assert "--nats-password-file" in said and secure.password not in said, said
        shown = Path(f"/proc/{first.pid}/cmdline").read_bytes()
        assert secure.password.encode() not in shown and b"nats://collector:***" in shown, shown
        other = ["--nats-user", secure.user, "--nats-password-file", str(password_file)]
        second = subprocess.Popen(
            [*tool, "--output", secure.server.url, *secure.tls, *other],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert second.stderr is not None and "watching" in second.stderr.readline()
        subprocess.run(["sh", "-c", "sleep 0.3", "url-password-marker"], check=True)
        first.send_signal(signal.SIGINT)
        _, rest = first.communicate(timeout=30)
        assert first.returncode == 0, rest
        assert secure.password not in rest and "events published to" in rest, rest
        time.sleep(0.5)  # for the second agent to see the first one's exit
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.communicate(timeout=30)
    contents = stream_contents(
        [secure.server.url], tls=secure.tls_context(), user=secure.user, password=secure.password
    )
    exits = [r for _, _, r in contents if r["kind"] == "exited" and r["pid"] == first.pid]
    assert exits and "nats://collector:***" in " ".join(exits[0]["command_line"]), exits
    leaks = [r for _, _, r in contents if secure.password in json.dumps(r)]
    assert not leaks, leaks
    assert any("url-password-marker" in json.dumps(r) for _, _, r in contents)


def test_what_the_agent_reports_about_itself_never_carries_its_password(
    secure: Secured,
) -> None:
    """An event of the agent's own process whose command line holds the URL's password is
    published with it masked; another process's command line goes out as the kernel said."""
    url = f"nats://{secure.user}:{secure.password}@{secure.server.url.removeprefix('nats://')}"
    how = access(
        url, tls_ca=str(secure.ca), tls_cert=str(secure.client_cert), tls_key=str(secure.client_key)
    )
    sink = JetStreamSink(url, nats_access=how, close_timeout=10)
    maker = RecordMaker()
    now = time.time()
    own_argv = ["python3", "-m", "procobsrv", "watch", "--output", url]
    other_argv = ["other", secure.password]
    sink.send(maker.event(new_item(EventKind.EXEC, os.getpid(), 1, now, 1, "/bin/py", own_argv)))
    sink.send(maker.event(new_item(EventKind.EXEC, 1, 0, now, 2, "/bin/other", other_argv)))
    sink.close()
    assert sink.published == 2 and secure.password not in sink.summary(), sink.summary()
    contents = stream_contents(
        [secure.server.url], tls=secure.tls_context(), user=secure.user, password=secure.password
    )
    argvs = {r["pid"]: r["command_line"] for _, _, r in contents}
    assert argvs[os.getpid()] == [*own_argv[:-1], url.replace(secure.password, "***")]
    assert argvs[1] == other_argv
