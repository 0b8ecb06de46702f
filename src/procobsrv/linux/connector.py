"""The kernel's process-events connector: a netlink socket subscribed to ``cn_proc``.

Layouts and constants are those of ``connector_abi`` (the kernel headers' mirror); the
behaviour is described in docs/linux.md. This module owns the socket and the subscription
handshake: open, subscribe and wait for the kernel's ack, receive many datagrams per system
call, unsubscribe, close. Decoding lives in ``connector_decoder``.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import Protocol

from ..errors import MonitorError
from .connector_abi import (
    ACK_ERR,
    CN_ACK,
    CN_IDX_PROC,
    KERNEL_SENDER,
    NETLINK_CONNECTOR,
    PROC_CN_MCAST_IGNORE,
    PROC_CN_MCAST_LISTEN,
    PROC_EVENT_NONE,
    SO_RCVBUFFORCE,
    U32_MASK,
    WHAT,
    Record,
    iovec,
    mmsghdr,
    msghdr,
    sockaddr_nl,
    subscription,
)
from .connector_decoder import FORGED, Buffer
from .libc import recvmmsg
from .privilege import connector_refused
from .sync import NO_FDS, is_readable, out_of_fds

log = logging.getLogger(__name__)

SOL_SOCKET = socket.SOL_SOCKET
# Plain ints: socket's MsgFlag members are enums, and `int & enum` per datagram costs a
# Python-level call into the enum machinery (seen in a py-spy profile of a storm).
MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
MSG_TRUNC = int(socket.MSG_TRUNC)

#: Default receive buffer: about 50,000 events of 76 bytes at kernel skb overhead.
DEFAULT_RCVBUF = 16 * 1024 * 1024
#: Bytes reserved for one datagram: a proc event is 76 bytes; leave room for growth.
SLOT_SIZE = 256
#: Datagrams fetched per recvmmsg call.
SLOTS = 256


_NAME_SIZE = ctypes.sizeof(sockaddr_nl)


_MMSG_SIZE = ctypes.sizeof(mmsghdr)
_INT_SIZE = ctypes.sizeof(ctypes.c_int)  # msg_flags is an int, msg_len an unsigned int
_FLAGS_GAP = mmsghdr.msg_len.offset - msghdr.msg_flags.offset - _INT_SIZE
_LEN_TAIL = _MMSG_SIZE - mmsghdr.msg_len.offset - _INT_SIZE
#: msg_hdr.msg_flags and msg_len inside one mmsghdr, skipping everything else.
_FLAGS_LEN = struct.Struct(f"={msghdr.msg_flags.offset}x i {_FLAGS_GAP}x I {_LEN_TAIL}x")


class Datagrams(Protocol):
    """Where the source receives datagrams: the ReceiveRing, or a replay's stand-in."""

    @property
    def buffer(self) -> Buffer: ...

    def receive(self, fd: int) -> list[tuple[int, int]]: ...


class ReceiveRing:
    """Preallocated buffers so that one ``recvmmsg`` call fetches up to SLOTS datagrams.

    Each datagram's sender address (``sockaddr_nl``) is read too: only the kernel, netlink
    port id 0, is believed. Any process with CAP_NET_ADMIN can send datagrams to our port
    id; those are reported as FORGED (the decoder counts and drops them).
    """

    def __init__(self, slots: int = SLOTS, slot_size: int = SLOT_SIZE) -> None:
        self.slot_size = slot_size
        self.buffer = ctypes.create_string_buffer(slots * slot_size)
        self._iov = (iovec * slots)()
        self._msgs = (mmsghdr * slots)()
        self._names = (sockaddr_nl * slots)()
        base = ctypes.addressof(self.buffer)
        for i in range(slots):
            self._iov[i].iov_base = base + i * slot_size
            self._iov[i].iov_len = slot_size
            self._msgs[i].msg_hdr.msg_iov = ctypes.pointer(self._iov[i])
            self._msgs[i].msg_hdr.msg_iovlen = 1
            # netlink writes the whole sockaddr_nl for every datagram (and msg_namelen back
            # as 12), so a sender's port id never lingers into the next call.
            self._msgs[i].msg_hdr.msg_name = ctypes.addressof(self._names[i])
            self._msgs[i].msg_hdr.msg_namelen = _NAME_SIZE
        self._slots = slots
        self._raw = memoryview(self._msgs).cast("B")
        # The kernel's multicast address, once per slot: one comparison checks a whole batch.
        self._senders = memoryview(self._names).cast("B")
        self._from_kernel = memoryview(bytes(KERNEL_SENDER) * slots)

    def receive(self, fd: int) -> list[tuple[int, int]]:
        """(offset, length) of each datagram ready now; [] when none. Raises OSError (ENOBUFS).

        The length is -1 for a datagram larger than a slot, FORGED for one not sent by the
        kernel."""
        n = recvmmsg(fd, self._msgs, self._slots, MSG_DONTWAIT, None)
        if n < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                return []
            raise OSError(err, os.strerror(err))
        # (msg_flags, msg_len) of each filled header, read in one pass over the raw array:
        # two ctypes attribute lookups per datagram cost more than decoding it.
        size = self.slot_size
        got = [
            (i * size, -1 if flags & MSG_TRUNC else length)  # -1: larger than a slot (malformed)
            for i, (flags, length) in enumerate(_FLAGS_LEN.iter_unpack(self._raw[: n * _MMSG_SIZE]))
        ]
        end = n * _NAME_SIZE
        if self._senders[:end] != self._from_kernel[:end]:  # rare: look at each sender
            names = self._names
            got = [(off, FORGED if names[i].nl_pid else ln) for i, (off, ln) in enumerate(got)]
        return got


#: Subscription cookies are drawn below this, so that the kernel's answer (cookie + 1)
#: still fits cn_msg.ack, a u32.
_ACK_COOKIES = 2**31
#: Seconds to wait for the kernel's answer to a subscription.
DEFAULT_ACK_TIMEOUT = 2.0

#: Reads whatever datagrams are ready and appends their decoded records to the list.
Receive = Callable[[list[Record]], None]


def open_netlink_socket(rcvbuf: int = DEFAULT_RCVBUF) -> socket.socket:
    """A non-blocking netlink socket bound to the proc connector's multicast group, with a
    receive buffer of ``rcvbuf`` bytes (where the kernel lets us have it); raises MonitorError
    saying what to do when it cannot."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    except OSError as exc:
        if exc.errno in NO_FDS:
            raise out_of_fds("the netlink connector socket", exc) from exc
        if exc.errno in (errno.EPROTONOSUPPORT, errno.EAFNOSUPPORT):
            raise MonitorError(
                "this kernel has no netlink connector: rebuild it with CONFIG_CONNECTOR=y "
                "and CONFIG_PROC_EVENTS=y"
            ) from exc
        raise MonitorError(f"cannot create the netlink connector socket: {exc}") from exc
    try:
        _grow_receive_buffer(sock, rcvbuf)
        try:
            sock.bind((0, CN_IDX_PROC))
        except PermissionError as exc:
            raise connector_refused("the bind") from exc
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _grow_receive_buffer(sock: socket.socket, rcvbuf: int) -> None:
    # Bursts are absorbed here; root may exceed net.core.rmem_max with SO_RCVBUFFORCE.
    try:
        sock.setsockopt(SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
    except PermissionError:
        sock.setsockopt(SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    got = sock.getsockopt(SOL_SOCKET, socket.SO_RCVBUF)
    log.debug("netlink receive buffer: asked %d, got %d bytes", rcvbuf, got)


class Subscription(Protocol):
    """What ConnectorSource needs of its socket: ConnectorSocket, or a replay's stand-in."""

    @property
    def fd(self) -> int: ...

    def open(self) -> None: ...

    def subscribe(self, receive: Receive, pending: list[Record]) -> None: ...

    def close(self) -> None: ...


class ConnectorSocket:
    """A netlink socket bound to the proc connector's multicast group, and the subscription
    handshake over it (:meth:`subscribe`)."""

    def __init__(
        self,
        rcvbuf: int = DEFAULT_RCVBUF,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        *,
        new_socket: Callable[[], socket.socket] | None = None,
    ) -> None:
        #: Makes the bound, non-blocking socket ``open`` uses: the kernel's netlink socket, or
        #: a test's stand-in (a socket pair whose other end plays the kernel).
        self._new_socket = new_socket or functools.partial(open_netlink_socket, rcvbuf)
        self._ack_timeout = ack_timeout
        self._sock: socket.socket | None = None
        self._ack = random.randrange(1, _ACK_COOKIES)
        #: The kernel has accepted our subscription (our own ack came back, without error).
        self.acknowledged = False

    @property
    def fd(self) -> int:
        if self._sock is None:
            raise MonitorError("the connector socket is not open")
        return self._sock.fileno()

    def open(self) -> None:
        self._sock = self._new_socket()

    def subscribe_message(self, op: int) -> bytes:
        return subscription(op, self._ack)

    @property
    def expected_ack(self) -> int:
        """The ``cn_msg.ack`` of the kernel's answer to our subscription (ours + 1)."""
        return (self._ack + 1) & U32_MASK

    def is_own_ack(self, cn_ack: int) -> bool:
        """Other listeners' acks, delivered to everyone, carry other numbers."""
        return cn_ack == self.expected_ack

    def subscribe(self, receive: Receive, pending: list[Record]) -> None:
        """Send LISTEN and wait for our own ack. ``receive`` appends what arrives to
        ``pending`` (events that come before the ack are kept there for the caller)."""
        self.acknowledged = False
        self.send(PROC_CN_MCAST_LISTEN)
        deadline = time.monotonic() + self._ack_timeout
        while not self.acknowledged:
            if not self.wait_readable(deadline):
                raise MonitorError(_NO_ACK.format(timeout=self._ack_timeout))
            first_new = len(pending)
            receive(pending)
            for rec in pending[first_new:]:
                if rec[WHAT] == PROC_EVENT_NONE and self._accepted(rec):
                    self.acknowledged = True

    def _accepted(self, ack: Record) -> bool:
        """True if this is our subscription's ack; raises if it carries an error."""
        if not self.is_own_ack(ack[CN_ACK]):
            return False  # another listener's ack
        err = ack[ACK_ERR]
        if err == errno.EPERM:
            raise connector_refused("the subscription")
        if err:
            raise MonitorError(_ACK_ERROR.format(error=os.strerror(err)))
        return True

    def send(self, op: int) -> None:
        if self._sock is None:
            raise MonitorError("the connector socket is not open")
        try:
            self._sock.send(self.subscribe_message(op))
        except ConnectionRefusedError as exc:
            raise MonitorError(_WRONG_NETNS) from exc
        except PermissionError as exc:
            raise connector_refused("the subscription") from exc

    def wait_readable(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        return remaining > 0 and is_readable(self.fd, remaining)

    @property
    def ack_timeout(self) -> float:
        return self._ack_timeout

    def close(self) -> None:
        self.acknowledged = False
        if self._sock is None:
            return
        try:
            self.send(PROC_CN_MCAST_IGNORE)
        except (OSError, MonitorError) as exc:  # it still closes; the kernel drops our membership
            log.debug("unsubscribe failed: %s", exc)
        sock, self._sock = self._sock, None
        sock.close()


_WRONG_NETNS = (
    "the process-events connector refused the subscription: it only exists in the initial "
    "network namespace, and this process runs in another one (a container?). Run procobsrv "
    "on the host, or in a container sharing the host network namespace (--network host)"
)
_NO_ACK = (
    "the kernel did not acknowledge the process-events subscription within {timeout:.1f} s: "
    "either this process runs in a non-initial user or PID namespace (a container: run "
    "procobsrv on the host, or with the host's PID and user namespaces), or the kernel lacks "
    "CONFIG_PROC_EVENTS"
)
_ACK_ERROR = "the kernel refused the process-events subscription: {error}"
