"""How the agent reaches NATS: the servers, TLS and credentials, from the command line, a
file or the environment.

No nats-py here: the command line is checked (and a password in it hidden) before the
optional extra is imported.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import ssl
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ..errors import MonitorError

log = logging.getLogger(__name__)

#: The environment variable that may hold the NATS password (kept out of the command line).
PASSWORD_ENV = "PROCOBSRV_NATS_PASSWORD"
#: What a password is shown as.
HIDDEN = "***"
#: The schemes a server may be given with; tls:// asks for TLS.
SCHEMES = ("nats", "tls")
#: What a JetStream stream name may not hold, and its longest length.
STREAM_NAME_FORBIDDEN = re.compile(r"[\s.*>/\\]")
MAX_STREAM_NAME = 255
#: The highest TCP port.
MAX_PORT = 65535


@dataclass
class NatsAccess:
    """Servers (without credentials), what the agent says when it names them, and how it
    authenticates: a creds file (JWT + NKey seed), an NKey seed file, or a user and password;
    TLS with a CA file and a client certificate and key."""

    servers: list[str]
    shown: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    creds: str | None = None
    nkey: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def connect_options(self) -> dict[str, Any]:
        """The keyword arguments of ``nats.connect`` beyond the servers."""
        options: dict[str, Any] = {}
        if (self.creds or self.nkey) and importlib.util.find_spec("nkeys") is None:
            raise MonitorError(
                "--nats-creds and --nats-nkey need the nkeys package, not installed here: "
                "pip install 'procobsrv[nats]'"
            )
        for what, path in (("--nats-creds", self.creds), ("--nats-nkey", self.nkey)):
            if path and not os.access(path, os.R_OK):
                raise MonitorError(f"{what} {path}: not a file this user can read")
        if self.creds:
            options["user_credentials"] = self.creds
        if self.nkey:
            options["nkeys_seed"] = self.nkey
        if self.user is not None:
            options["user"] = self.user
        if self.password is not None:
            options["password"] = self.password
        tls = self.tls_context()
        if tls is not None:
            options["tls"] = tls
        return options

    def tls_context(self) -> ssl.SSLContext | None:
        wants_tls = any(url.startswith("tls://") for url in self.servers)
        if not (wants_tls or self.tls_ca or self.tls_cert):
            return None  # plain, or TLS with the system's CAs if the server requires it
        try:
            context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise MonitorError(f"cannot load the NATS TLS files: {exc}") from exc
        return context


def parse_servers(target: str) -> tuple[list[str], str | None, str | None]:
    """``nats://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]`` -> (server urls without the
    credentials, user, password). A port outside 1..65535 or a missing host is refused."""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme not in SCHEMES:
        raise MonitorError(f"{target!r}: give nats://HOST:PORT[,HOST:PORT...]")
    user = password = None
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        name, has_password, secret = userinfo.partition(":")
        user = urllib.parse.unquote(name)
        password = urllib.parse.unquote(secret) if has_password else None
    urls = []
    for host in (h.strip() for h in rest.split(",")):
        if host:
            check_host(host, target)
            urls.append(f"{scheme}://{host}")
    if not urls:
        raise MonitorError(f"no NATS server in {hidden(target)!r}: give nats://HOST:PORT[,...]")
    return urls, user, password


def check_stream_name(name: str) -> str:
    """A JetStream stream name: no whitespace, ``.``, ``*``, ``>``, ``/`` or ``\\``."""
    if not name or len(name) > MAX_STREAM_NAME or STREAM_NAME_FORBIDDEN.search(name):
        raise MonitorError(
            f"{name!r} is not a JetStream stream name (1..{MAX_STREAM_NAME} characters, "
            "no spaces, '.', '*', '>', '/' or '\\')"
        )
    return name


def check_host(host: str, target: str) -> None:
    """``HOST[:PORT]`` with a host name and a port in 1..65535 (none: NATS's 4222)."""
    try:
        parts = urllib.parse.urlsplit(f"//{host}")
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0 or not parts.hostname:
        raise MonitorError(
            f"{host!r} in {hidden(target)!r}: give HOST:PORT with a port in 1..{MAX_PORT}"
        )


def hidden(target: str) -> str:
    """``target`` with its password replaced by ``***``."""
    scheme, sep, rest = target.partition("://")
    if "@" not in rest:
        return target
    userinfo, hosts = rest.rsplit("@", 1)
    name, has_password, _ = userinfo.partition(":")
    return f"{scheme}{sep}{name}{':' + HIDDEN if has_password else ''}@{hosts}"


def read_secret(path: str) -> str:
    """The first line of a file (a password or a token), without its newline."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise MonitorError(f"cannot read the NATS password file {path}: {exc}") from exc


def hide_in_command_line(secret: str) -> bool:
    """Overwrites ``secret`` with ``*`` in this process's own argument area, so that
    /proc/PID/cmdline (what ``ps`` and the process monitors read, this one included) no longer
    shows it. True when it was found and hidden."""
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    # arg_start and arg_end are /proc/PID/stat's fields 48 and 49, counted from 1: the 46th
    # and 47th after the command name (whose parentheses may hold spaces).
    fields = data[data.rfind(b")") + 2 :].split()
    start, end = int(fields[45]), int(fields[46])
    needle = secret.encode()
    fd = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
    try:
        area = os.pread(fd, end - start, start)
        if not needle or needle not in area:
            return False
        os.pwrite(fd, area.replace(needle, b"*" * len(needle)), start)
        return True
    finally:
        os.close(fd)


def access(
    target: str,
    *,
    user: str | None = None,
    password_file: str | None = None,
    creds: str | None = None,
    nkey: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> NatsAccess:
    """The :class:`NatsAccess` of a command line. The password comes from ``password_file``,
    else from $PROCOBSRV_NATS_PASSWORD, else from the URL: the last is hidden from
    /proc/PID/cmdline at once, with a warning (it was visible until then)."""
    servers, url_user, url_password = parse_servers(target)
    password = os.environ.get(PASSWORD_ENV) or None
    if password_file is not None:
        password = read_secret(password_file)
    if url_password is not None:
        hid = False
        try:
            hid = hide_in_command_line(url_password)
        except OSError as exc:
            log.debug("could not hide the password in the command line: %s", exc)
        log.warning(
            "a password in the NATS URL is visible to every user in the process list%s; "
            "give it with --nats-password-file FILE or $%s instead",
            " until the agent starts (hidden now)" if hid else "",
            PASSWORD_ENV,
        )
        password = password if password is not None else url_password
    if tls_key and not tls_cert:
        raise MonitorError("--nats-tls-key needs --nats-tls-cert")
    result = NatsAccess(
        servers,
        hidden(target),
        user if user is not None else url_user,
        password,
        creds,
        nkey,
        tls_ca,
        tls_cert,
        tls_key,
    )
    result.connect_options()  # unreadable TLS files, no nkeys: said now, before any start
    return result
