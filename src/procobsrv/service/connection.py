"""One client of the service: its socket, what it is owed, and its subscription.

What the service holds for a client is bounded: the events in its subscription's window
(bounded in events and bytes; beyond that its own events are dropped and counted), plus
the bytes of at most one chunk taken from the window and not yet accepted by its socket.
"""

from __future__ import annotations

import socket

from ..subscription import Subscription
from . import wire
from .rule import Peer


class Queued:
    """Something the loop serves when woken; in its ready queue at most once (a window wakes
    the loop at every offer: a hundred clients would otherwise queue a hundred entries per
    batch, and each turn of the loop would go through all of them)."""

    queued = False


class Connection(Queued):
    """A connected client: first its hello, then its stream."""

    def __init__(self, sock: socket.socket, peer: Peer, now: float) -> None:
        self.sock = sock
        self.peer = peer
        #: Until the hello is read: when the client is cut off for not sending it.
        self.hello_deadline: float | None = now + wire.HELLO_TIMEOUT
        self.hello = b""  # what came of the hello so far
        self.subscription: Subscription | None = None
        self.sees_all = False
        self._out = memoryview(b"")  # bytes taken from the window, not yet sent
        self.wants_write = False  # registered for EVENT_WRITE
        self.closed = False
        self.events = 0  # events sent

    @property
    def pending(self) -> bool:
        return bool(self._out)

    def queue(self, data: bytes) -> None:
        """Bytes to send after what is pending (the caller sends only once that is out)."""
        self._out = memoryview(bytes(self._out) + data) if self._out else memoryview(data)

    def flush(self) -> bool:
        """Send what is pending, as much as the socket takes now; True once all of it is out.
        Raises OSError if the client is gone."""
        out = self._out
        while out:
            try:
                sent = self.sock.send(out)
            except BlockingIOError:
                break
            out = out[sent:]
        self._out = out
        return not out

    def read_hello(self, data: bytes) -> bytes | None:
        """Add ``data`` to the hello; the line once complete (else None). WireError when it
        is longer than a hello may be."""
        self.hello += data
        line, newline, _ = self.hello.partition(b"\n")
        if newline:
            return line
        if len(self.hello) > wire.MAX_HELLO:
            raise wire.WireError(f"no hello line within {wire.MAX_HELLO} bytes")
        return None

    def late(self, now: float) -> bool:
        """The client connected and has not said hello in time."""
        return self.hello_deadline is not None and now >= self.hello_deadline

    def say_last(self, data: bytes) -> None:
        """Best effort, never waiting: what is pending, then ``data`` (an end or an error)."""
        try:
            if self.flush():
                self.sock.send(data)
        except OSError:
            pass  # gone or full: it learns of the end from the closed connection

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            subscription.discard()
        self.sock.close()
