"""``procobsrv serve``'s loop: one kernel subscription, served to local clients.

The service is one more user of the process-wide :class:`~procobsrv.ApplicationScope`:
each client is a stream subscription of its own (``open_stream``), with its own bounded
window, losses and sieve (``rule.py``), fed by the scope's retrieval thread like any other
subscriber. The service's own subscription (the *keeper*) holds the kernel side open while
no client is attached, so that a client joins a running session instead of loading the
eBPF program again.

Why one loop and not a thread per client: every client's socket is non-blocking, and one
thread (this loop, on ``selectors``) moves bytes from each window to its socket when the
window wakes it and the socket has room. A client that stops reading leaves its socket
full: the loop stops taking from its window, which then drops that client's own events by
its policy (counted, told to it as a ``lost`` record when it reads again); no other client
and no thread of the pipeline ever waits for it. The threads are the pipeline's two plus
this one, whatever the number of clients, and each client costs a window and a socket.
"""

from __future__ import annotations

import collections
import logging
import os
import selectors
import socket
import time
from collections.abc import Callable, Sequence

from ..bounded import Bounds, OverflowPolicy
from ..events import QueuedItem
from ..platform import SourceChoice
from ..scope import ApplicationScope
from . import wire
from .connection import Connection, Queued
from .rule import Rule, describe, peer_of

log = logging.getLogger(__name__)

#: What each client's window holds while the client does not read: a few seconds of a
#: storm, or some 30,000 execs of short command lines (the batches are shared with the other
#: windows, so stalled clients hold little more than one of them).
CLIENT_BOUNDS = Bounds(16384, 16 << 20, OverflowPolicy.DROP_OLDEST)
#: Clients served at once; one more is told so and closed.
MAX_CLIENTS = 1024
#: Chunks moved for one client before the loop turns to the others (it comes back).
TURN = 4
#: How much of what a client sends the loop reads at a time.
READ_SIZE = 4096

_LISTENER, _WAKER = "listener", "waker"


class _Keeper(Queued):
    """The ready-queue entry of the service's own subscription."""


class Waker:
    """Wakes the loop from another thread (the retrieval thread, a signal handler): one
    byte into a pipe, written only when the loop has not been woken since it last looked."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._woken = False

    def wake(self) -> None:
        if not self._woken:
            self._woken = True
            try:
                os.write(self.write_fd, b"\0")
            except OSError:
                pass  # full: the loop is woken anyway; closed: the loop is over

    def clear(self) -> None:
        """In the loop, before it looks at what woke it: the pipe emptied first, then the flag
        cleared (the other order could leave the flag set over an empty pipe, and every later
        wake-up unwritten). A wake-up in between writes nothing, and needs not: what it
        announces is already in the ready queue, which the loop looks at next."""
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        self._woken = False

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


class _Counter:
    """The keeper's sieve: counts the events and keeps none (only losses reach its window)."""

    def __init__(self) -> None:
        self.events = 0

    def __call__(
        self, items: Sequence[QueuedItem], nbytes: int
    ) -> tuple[Sequence[QueuedItem], int]:
        self.events += len(items)
        return (), 0


class EventService:
    """Serves the scope's events to the clients of ``listener`` (a listening Unix socket)
    by ``rule``; :meth:`run` until :meth:`stop`."""

    def __init__(
        self,
        listener: socket.socket,
        rule: Rule,
        *,
        source: SourceChoice = "kernel",
        client_bounds: Bounds = CLIENT_BOUNDS,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.listener = listener
        self.rule = rule
        self.client_bounds = client_bounds
        self.max_clients = max_clients
        self.scope = ApplicationScope.shared()
        # The kernel side, opened first: a client never finds the service without it. The
        # keeper's bounds are the kernel queue's (its own window never holds an event).
        self._counter = _Counter()
        self._keeper = self.scope.open_stream("procobsrv serve", source=source, sieve=self._counter)
        self.source = self.scope.source.name if self.scope.source is not None else "?"
        self.waker = Waker()
        #: Clients (and the keeper) whose window woke: appended by the retrieval thread.
        self._ready: collections.deque[Queued] = collections.deque()
        self._keeper_entry = _Keeper()
        self._clients: dict[int, Connection] = {}
        self._selector = selectors.DefaultSelector()
        self._encoder = wire.Encoder()
        self._stopping = False
        #: Why the service ended on its own (the kernel side failed), else None.
        self.failure: BaseException | None = None
        self.served = 0  # clients that said hello
        self.kernel_lost = 0
        self._keeper.wake = self._waking(self._keeper_entry)

    @property
    def received(self) -> int:
        """Events the kernel side reported."""
        return self._counter.events

    @property
    def clients(self) -> int:
        return len(self._clients)

    def stop(self) -> None:
        """End :meth:`run` (from any thread, or a signal handler)."""
        self._stopping = True
        self.waker.wake()

    def _waking(self, who: Queued) -> Callable[[], None]:
        ready, wake = self._ready, self.waker.wake

        def woken() -> None:  # on the retrieval thread, for every offer
            if not who.queued:  # else the loop will serve it: it clears the flag first
                who.queued = True
                ready.append(who)
                wake()

        return woken

    def _queue(self, who: Queued) -> None:
        """On the loop: serve ``who`` at the next turn."""
        if not who.queued:
            who.queued = True
            self._ready.append(who)

    def run(self) -> None:
        """Serve until :meth:`stop` or the kernel side fails; then tell every client, close
        them, and leave the scope."""
        selector = self._selector
        self.listener.setblocking(False)
        selector.register(self.listener, selectors.EVENT_READ, _LISTENER)
        selector.register(self.waker.read_fd, selectors.EVENT_READ, _WAKER)
        self._queue(self._keeper_entry)
        try:
            while not self._stopping:
                for key, mask in selector.select(self._timeout()):
                    if key.data == _LISTENER:
                        self._accept()
                    elif key.data == _WAKER:
                        self.waker.clear()
                    else:
                        self._ready_to(key.data, mask)
                self._serve_ready()
                self._cut_off_late()
        finally:
            self._end()

    def _timeout(self) -> float | None:
        if self._ready:
            return 0.0
        deadlines = [c.hello_deadline for c in self._clients.values() if c.hello_deadline]
        return None if not deadlines else max(0.0, min(deadlines) - time.monotonic())

    # -- clients coming -----------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE...: the others are served; this one waits
                log.warning("cannot accept a client: %s", exc)
                return
            sock.setblocking(False)
            try:
                peer = peer_of(sock)
            except OSError as exc:
                log.warning("cannot read a client's credentials: %s", exc)
                sock.close()
                continue
            connection = Connection(sock, peer, time.monotonic())
            if len(self._clients) >= self.max_clients:
                connection.say_last(wire.error_line(f"too many clients ({self.max_clients})"))
                connection.close()
                log.warning("refused %s: %d clients already", describe(peer), self.max_clients)
                continue
            self._clients[sock.fileno()] = connection
            self._selector.register(sock, selectors.EVENT_READ, connection)

    def _ready_to(self, connection: Connection, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            self._read(connection)
        if mask & selectors.EVENT_WRITE and not connection.closed:
            self._queue(connection)

    def _read(self, connection: Connection) -> None:
        try:
            data = connection.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client left
            self._drop(connection)
            return
        if connection.hello_deadline is None:
            self._refuse(connection, "a client sends nothing after its hello")
            return
        try:
            line = connection.read_hello(data)
            if line is None:
                return
            wire.check_client_hello(line)
        except wire.WireError as exc:
            self._refuse(connection, str(exc))
            return
        self._welcome(connection)

    def _welcome(self, connection: Connection) -> None:
        """Its hello was right: subscribe it, answer, and start its stream."""
        peer = connection.peer
        connection.hello_deadline = None
        connection.sees_all = self.rule.sees_all(peer)
        connection.subscription = self.scope.open_stream(
            f"client {describe(peer)}",
            queue_limit=self.client_bounds.limit,
            queue_bytes=self.client_bounds.byte_limit,
            overflow=self.client_bounds.policy,
            sieve=self.rule.sieve_for(peer),
        )
        connection.subscription.wake = self._waking(connection)
        connection.queue(wire.service_hello(self.source, peer.uid, connection.sees_all))
        self.served += 1
        log.info("client %s (%s)", describe(peer), "all" if connection.sees_all else "own")
        self._queue(connection)

    def _refuse(self, connection: Connection, why: str) -> None:
        log.warning("cut off client %s: %s", describe(connection.peer), why)
        connection.say_last(wire.error_line(why))
        self._drop(connection)

    def _cut_off_late(self) -> None:
        now = time.monotonic()
        for connection in [c for c in self._clients.values() if c.late(now)]:
            self._refuse(connection, f"no hello line within {wire.HELLO_TIMEOUT:g} s")

    def _drop(self, connection: Connection) -> None:
        if connection.closed:
            return
        self._clients.pop(connection.sock.fileno(), None)
        self._selector.unregister(connection.sock)
        connection.close()

    # -- events going -------------------------------------------------------------------
    def _serve_ready(self) -> None:
        ready = self._ready
        for _ in range(len(ready)):  # those woken since: the next round (after select)
            who = ready.popleft()
            who.queued = False  # before taking: an offer from now on queues it again
            if isinstance(who, _Keeper):
                self._keep()
            elif isinstance(who, Connection) and not who.closed:
                self._pump(who)

    def _keep(self) -> None:
        """The keeper's window: the kernel's losses, and the news that the kernel side ended."""
        keeper = self._keeper
        while (got := keeper.take(0.0)) is not None:
            if got == ((), 0):
                return
            self.kernel_lost += got[1]
        self.failure = keeper.failure or RuntimeError("the kernel side stopped")
        log.error("monitoring stopped: %s", self.failure)
        self._stopping = True

    def _pump(self, connection: Connection) -> None:
        """Move up to TURN chunks from the client's window to its socket."""
        subscription = connection.subscription
        if subscription is None:
            return
        try:
            for _ in range(TURN):
                if not connection.flush():
                    self._want_write(connection, True)
                    return
                got = subscription.take(0.0)
                if got is None:  # the kernel side ended: the loop is about to end too
                    return
                items, lost = got
                if not items and not lost:
                    self._want_write(connection, False)
                    return
                connection.events += len(items)
                connection.queue(self._encoder.encode(items, lost))
            self._queue(connection)  # more may wait: after the others
        except OSError:  # the client is gone
            self._drop(connection)

    def _want_write(self, connection: Connection, wants: bool) -> None:
        if connection.wants_write != wants:
            connection.wants_write = wants
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wants else 0)
            self._selector.modify(connection.sock, events, connection)

    # -- the end ------------------------------------------------------------------------
    def _end(self) -> None:
        reason = "the procobsrv service stopped"
        if self.failure is not None:
            reason = f"the procobsrv service's monitoring failed: {self.failure}"
        last = wire.error_line(reason) if self.failure is not None else wire.end_line(reason)
        for connection in list(self._clients.values()):
            if connection.subscription is not None:
                connection.say_last(last)
            self._drop(connection)
        self._keeper.discard()
        self._selector.close()
        self.waker.close()
        log.info(
            "served %d clients; %d events from the kernel, %d lost there",
            self.served,
            self.received,
            self.kernel_lost,
        )
