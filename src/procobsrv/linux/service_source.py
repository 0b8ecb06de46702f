"""A publisher for unprivileged programs: process events from ``procobsrv serve``.

The service (root) owns the kernel subscription and sends each client the events it may
see (``procobsrv/service/rule.py``) over a Unix socket, as JSON records
(``procobsrv/service/wire.py``); this source reads them back into QueuedItems, so that the
framework runs over it unchanged. Its wait handle is the socket.

The stream ends with an error the framework hands on (``on_error``, a stream's exception):
the service's ``end`` record when it stops, or the connection closing without one when it
is killed.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time

from ..errors import MonitorError
from ..platform import Batch, KernelSource, not_open
from ..service import wire

log = logging.getLogger(__name__)

#: Where the service listens unless told otherwise (``PROCOBSRV_SOCKET`` overrides it).
DEFAULT_SOCKET = "/run/procobsrv/events.sock"
SOCKET_VARIABLE = "PROCOBSRV_SOCKET"
HOW_TO_START = (
    "start it as root: `sudo procobsrv serve` (or `systemctl enable --now "
    "procobsrv-serve.socket`, docs/how-to/local-service.md)"
)
#: Seconds to wait for the service's hello: generous, since a loaded machine (a hundred
#: programs starting at once) may delay it; a service that is not there fails at once.
ANSWER_TIMEOUT = 30.0
#: Bytes read per fetch at most: bounds the time before a batch is handed on.
MAX_FETCH_BYTES = 1 << 20
_READ = 256 << 10
_UCRED = struct.Struct("3i")


def default_socket() -> str:
    return os.environ.get(SOCKET_VARIABLE) or DEFAULT_SOCKET


class ServiceClosed(MonitorError):
    """The service ended this client's stream (it stopped, or it went away)."""


class ServiceSource(KernelSource):
    """Process events from the procobsrv service listening on ``socket_path``.

    Only a service run by root or by this process's own user is trusted (its credentials
    are the kernel's, read from the connection): anyone else's socket could lie.
    """

    name = "service"

    def __init__(self, *, socket_path: str | None = None, timeout: float = ANSWER_TIMEOUT):
        self.socket_path = socket_path or default_socket()
        self.timeout = timeout
        #: The service's hello: its source, and whether this client sees every process.
        self.hello: dict[str, object] = {}
        self._sock: socket.socket | None = None
        self._decoder = wire.Decoder()
        self._ended: MonitorError | None = None

    # -- KernelSource -----------------------------------------------------------------
    def open(self) -> None:
        if self._sock is not None:
            raise MonitorError("the service source is already open")
        self._decoder = wire.Decoder()
        self._ended = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(self.timeout)
            self._connect(sock)
            self._trust(sock)
            sock.sendall(wire.client_hello())
            self.hello = wire.check_service_hello(self._hello_line(sock))
            sock.setblocking(False)
        except wire.WireError as exc:
            sock.close()
            raise MonitorError(f"the procobsrv service at {self.socket_path}: {exc}") from exc
        except OSError as exc:
            sock.close()
            raise MonitorError(
                f"talking to the procobsrv service at {self.socket_path} failed: {exc}"
            ) from exc
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def _connect(self, sock: socket.socket) -> None:
        path = self.socket_path
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise MonitorError(f"no procobsrv service listens on {path}: {HOW_TO_START}") from exc
        except PermissionError as exc:
            raise MonitorError(
                f"this user may not reach the procobsrv service's socket {path} ({exc.strerror})"
            ) from exc

    def _trust(self, sock: socket.socket) -> None:
        _, uid, _ = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
        if uid not in (0, os.geteuid()):
            raise MonitorError(
                f"the socket {self.socket_path} is served by uid {uid}, not root: not trusted"
            )

    def _hello_line(self, sock: socket.socket) -> bytes:
        """The service's first line, and not a byte more: the events after it stay in the
        socket, which keeps the wait handle signalled for them."""
        deadline = time.monotonic() + self.timeout
        while True:
            seen = sock.recv(wire.MAX_HELLO, socket.MSG_PEEK)
            if not seen:
                raise wire.WireError("the service closed the connection before its hello")
            end = seen.find(b"\n")
            if end >= 0:
                return sock.recv(end + 1)[:-1]
            if len(seen) >= wire.MAX_HELLO or time.monotonic() > deadline:
                raise wire.WireError("the service did not finish its hello line")
            time.sleep(0.001)  # half a line (a peek would return it again at once)

    @property
    def wait_handle(self) -> int:
        if self._sock is None:
            raise not_open("service")
        return self._sock.fileno()

    def fetch_batch(self) -> Batch:
        sock = self._sock
        if sock is None:
            raise not_open("service")
        if self._ended is not None:
            raise self._ended
        out = wire.Decoded()
        read = 0
        while read < MAX_FETCH_BYTES and out.end is None:
            try:
                data = sock.recv(_READ)
            except BlockingIOError:
                break
            except OSError as exc:
                self._ended = ServiceClosed(
                    f"the connection to the procobsrv service at {self.socket_path} failed: {exc}"
                )
                break
            if not data:
                self._ended = ServiceClosed(
                    f"the procobsrv service at {self.socket_path} closed the connection "
                    "without saying why (killed?)"
                )
                break
            read += len(data)
            try:
                self._decoder.feed(data, out)
            except wire.WireError as exc:
                self._ended = ServiceClosed(f"the procobsrv service at {self.socket_path}: {exc}")
                break
        if out.end is not None:
            self._ended = ServiceClosed(out.end)
        if self._ended is not None and not out.items and not out.lost:
            raise self._ended
        return Batch(out.items, out.lost)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
