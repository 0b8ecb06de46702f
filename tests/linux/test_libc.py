"""linux/libc.py: the C library's prototypes, called for real."""

from __future__ import annotations

import ctypes
import errno
import mmap
import socket

from procobsrv.linux import connector_abi as abi
from procobsrv.linux import libc


def test_mmap_and_munmap_an_anonymous_page() -> None:
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    addr = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, flags, -1, 0)
    assert addr not in (None, libc.MAP_FAILED)
    ctypes.c_uint64.from_address(addr).value = 0x1234_5678_9ABC
    assert ctypes.c_uint64.from_address(addr).value == 0x1234_5678_9ABC
    assert libc.munmap(addr, mmap.PAGESIZE) == 0


def test_mmap_failure_is_map_failed_with_errno() -> None:
    addr = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_SHARED, -1, 0)
    assert addr == libc.MAP_FAILED and ctypes.get_errno() == errno.EBADF


def test_recvmmsg_receives_each_datagram_into_its_slot() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        theirs.send(b"one")
        theirs.send(b"second")
        buffers = [ctypes.create_string_buffer(16) for _ in range(2)]
        iovs = [abi.iovec(ctypes.cast(b, ctypes.c_void_p), 16) for b in buffers]
        msgs = (abi.mmsghdr * 2)()
        for msg, iov in zip(msgs, iovs, strict=True):
            msg.msg_hdr.msg_iov = ctypes.pointer(iov)
            msg.msg_hdr.msg_iovlen = 1
        assert libc.recvmmsg(ours.fileno(), msgs, 2, socket.MSG_DONTWAIT, None) == 2
        assert [buffers[i].raw[: msgs[i].msg_len] for i in range(2)] == [b"one", b"second"]
