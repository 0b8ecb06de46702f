"""The process-events connector's kernel ABI, described once: the Python side of
``<linux/netlink.h>``, ``<linux/connector.h>`` and ``<linux/cn_proc.h>``, and of the
``recvmmsg(2)`` structures of ``<sys/socket.h>`` the datagrams are received with.

Every constant and structure the connector code uses is declared here, under the kernel's
own names; ``tests/linux/test_connector_abi.py`` compiles ``_Static_assert``s generated from
these declarations against the installed kernel headers, so that the two cannot drift apart.

The decoder's hot loop reads a whole message with one ``struct.Struct`` (:data:`RECORD`);
that format and the positions of the fields in the tuple it yields (``FORK_CHILD_TGID``,
``EXIT_EXIT_CODE``, ...) are derived from the structures below, never written by hand.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
from typing import Any, Final

u16, u32, u64 = ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64
#: __kernel_pid_t (int). The record reads pids unsigned, as the kernel never sends a
#: negative one; a forged negative value then names no process instead of a wrong one.
pid_t = ctypes.c_int32

# -- <linux/netlink.h> ----------------------------------------------------------------------
NETLINK_CONNECTOR: Final = 11
NLMSG_ALIGNTO: Final = 4
NLMSG_NOOP: Final = 0x1
NLMSG_ERROR: Final = 0x2
NLMSG_DONE: Final = 0x3
NLMSG_OVERRUN: Final = 0x4


class nlmsghdr(ctypes.Structure):
    """The header of every netlink message."""

    _fields_ = (
        ("nlmsg_len", u32),  # of the whole message, header included
        ("nlmsg_type", u16),
        ("nlmsg_flags", u16),
        ("nlmsg_seq", u32),
        ("nlmsg_pid", u32),  # the sender's port id: 0 is the kernel
    )


class sockaddr_nl(ctypes.Structure):
    """A netlink address: what recvmmsg reports as each datagram's sender."""

    _fields_ = (
        ("nl_family", ctypes.c_ushort),  # __kernel_sa_family_t
        ("nl_pad", ctypes.c_ushort),
        ("nl_pid", u32),  # port id: 0 is the kernel
        ("nl_groups", u32),  # multicast groups, one bit each
    )


NLMSG_HDRLEN: Final = (ctypes.sizeof(nlmsghdr) + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1)


def nlmsg_align(length: int) -> int:
    """NLMSG_ALIGN: where the next message of a datagram starts."""
    return (length + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1)


# -- <sys/socket.h>: what recvmmsg(2) fills, and the receive buffer option ------------
#: setsockopt option to exceed net.core.rmem_max as root (<asm-generic/socket.h>).
SO_RCVBUFFORCE: Final = 33


class iovec(ctypes.Structure):
    """One buffer of a scatter/gather list (<sys/uio.h>)."""

    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class msghdr(ctypes.Structure):
    """What one datagram is received into: its sender, its buffers, its flags."""

    _fields_ = (
        ("msg_name", ctypes.c_void_p),  # a sockaddr_nl: who sent it
        ("msg_namelen", ctypes.c_uint32),  # socklen_t
        ("msg_iov", ctypes.POINTER(iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),  # MSG_TRUNC: the datagram was larger than its buffer
    )


class mmsghdr(ctypes.Structure):
    """One entry of recvmmsg's array: a msghdr and the length received into it."""

    _fields_ = (("msg_hdr", msghdr), ("msg_len", ctypes.c_uint32))


# -- <linux/connector.h> ------------------------------------------------------------------
CN_IDX_PROC: Final = 0x1
CN_VAL_PROC: Final = 0x1


class cb_id(ctypes.Structure):
    """Which connector user a message is for (``cn_proc``: CN_IDX_PROC.CN_VAL_PROC)."""

    _fields_ = (("idx", u32), ("val", u32))


class cn_msg(ctypes.Structure):
    """The connector header; ``len`` bytes of data (here a proc_event) follow it."""

    _fields_ = (
        ("id", cb_id),
        ("seq", u32),  # per-CPU counter of the kernel: a gap is that many lost messages
        ("ack", u32),  # the kernel answers a subscription with ours + 1
        ("len", u16),
        ("flags", u16),
    )


#: cn_msg.seq and cn_msg.ack are u32s: their arithmetic is taken modulo 2**32.
U32_MASK: Final = 0xFFFFFFFF
#: The cpu of an ack from a kernel before 4.x: -1 as a u32 (and no per-CPU seq).
NO_CPU: Final = U32_MASK


# -- <linux/cn_proc.h> --------------------------------------------------------------------
PROC_CN_MCAST_LISTEN: Final = 1
PROC_CN_MCAST_IGNORE: Final = 2

PROC_EVENT_NONE: Final = 0x00000000
PROC_EVENT_FORK: Final = 0x00000001
PROC_EVENT_EXEC: Final = 0x00000002
PROC_EVENT_UID: Final = 0x00000004
PROC_EVENT_GID: Final = 0x00000040
PROC_EVENT_SID: Final = 0x00000080
PROC_EVENT_PTRACE: Final = 0x00000100
PROC_EVENT_COMM: Final = 0x00000200
PROC_EVENT_COREDUMP: Final = 0x40000000
PROC_EVENT_EXIT: Final = 0x80000000


class ack_proc_event(ctypes.Structure):
    """The answer to a subscription (what = NONE); an anonymous struct in the header."""

    _fields_ = (("err", u32),)


class fork_proc_event(ctypes.Structure):
    _fields_ = (
        ("parent_pid", pid_t),
        ("parent_tgid", pid_t),
        ("child_pid", pid_t),  # != child_tgid: a new thread, not a new process
        ("child_tgid", pid_t),
    )


class exec_proc_event(ctypes.Structure):
    _fields_ = (("process_pid", pid_t), ("process_tgid", pid_t))


class id_real(ctypes.Union):
    _fields_ = (("ruid", u32), ("rgid", u32))


class id_effective(ctypes.Union):
    _fields_ = (("euid", u32), ("egid", u32))


class id_proc_event(ctypes.Structure):
    _fields_ = (
        ("process_pid", pid_t),
        ("process_tgid", pid_t),
        ("r", id_real),
        ("e", id_effective),
    )


class sid_proc_event(ctypes.Structure):
    _fields_ = (("process_pid", pid_t), ("process_tgid", pid_t))


class ptrace_proc_event(ctypes.Structure):
    _fields_ = (
        ("process_pid", pid_t),
        ("process_tgid", pid_t),
        ("tracer_pid", pid_t),
        ("tracer_tgid", pid_t),
    )


class comm_proc_event(ctypes.Structure):
    _fields_ = (("process_pid", pid_t), ("process_tgid", pid_t), ("comm", ctypes.c_char * 16))


class coredump_proc_event(ctypes.Structure):
    _fields_ = (
        ("process_pid", pid_t),
        ("process_tgid", pid_t),
        ("parent_pid", pid_t),
        ("parent_tgid", pid_t),
    )


class exit_proc_event(ctypes.Structure):
    _fields_ = (
        ("process_pid", pid_t),
        ("process_tgid", pid_t),  # != process_pid: a thread ended, not the process
        ("exit_code", u32),  # the raw wait status (see decode_wait_status)
        ("exit_signal", u32),  # sent to the parent (SIGCHLD), NOT the signal that killed it
        ("parent_pid", pid_t),
        ("parent_tgid", pid_t),
    )


class event_data(ctypes.Union):
    """proc_event's union: one member per kind of event."""

    _fields_ = (
        ("ack", ack_proc_event),
        ("fork", fork_proc_event),
        ("exec", exec_proc_event),
        ("id", id_proc_event),
        ("sid", sid_proc_event),
        ("ptrace", ptrace_proc_event),
        ("comm", comm_proc_event),
        ("coredump", coredump_proc_event),
        ("exit", exit_proc_event),
    )


class proc_event(ctypes.Structure):
    _fields_ = (
        ("what", u32),  # enum what: one PROC_EVENT_* value
        ("cpu", u32),
        ("timestamp_ns", u64),  # CLOCK_MONOTONIC nanoseconds, 8-byte aligned in the header
        ("event_data", event_data),
    )


#: The union member each kind of event carries: its size is what a message must hold.
MEMBER_OF: Final[dict[int, type[ctypes.Structure]]] = {
    PROC_EVENT_NONE: ack_proc_event,
    PROC_EVENT_FORK: fork_proc_event,
    PROC_EVENT_EXEC: exec_proc_event,
    PROC_EVENT_UID: id_proc_event,
    PROC_EVENT_GID: id_proc_event,
    PROC_EVENT_SID: sid_proc_event,
    PROC_EVENT_PTRACE: ptrace_proc_event,
    PROC_EVENT_COMM: comm_proc_event,
    PROC_EVENT_COREDUMP: coredump_proc_event,
    PROC_EVENT_EXIT: exit_proc_event,
}
#: Bytes of the union each kind of event needs.
UNION_LEN: Final = {what: ctypes.sizeof(member) for what, member in MEMBER_OF.items()}


# -- messages as they travel: netlink header, connector header, payload, unpadded -----------
class proc_message(ctypes.Structure):
    """One netlink message of the cn_proc group. Not a C struct: cn_msg's payload starts
    right after its 20 bytes, so the 8-byte alignment of proc_event does not apply here."""

    _pack_ = 1
    _fields_ = (("nlh", nlmsghdr), ("msg", cn_msg), ("event", proc_event))


class subscription_message(ctypes.Structure):
    """What we send to (un)subscribe: the payload is one enum proc_cn_mcast_op."""

    _pack_ = 1
    _fields_ = (("nlh", nlmsghdr), ("msg", cn_msg), ("op", u32))


CN_MSG_LEN: Final = ctypes.sizeof(cn_msg)
#: what, cpu, timestamp_ns: the part of a proc_event before its union.
EVENT_HEADER_LEN: Final = proc_event.event_data.offset
#: Where the union starts in a message, and the bytes a record covers: the header, then the
#: union up to the end of its largest member that is read (exit, six 32-bit words).
UNION_OFFSET: Final = proc_message.event.offset + EVENT_HEADER_LEN
RECORD_LEN: Final = UNION_OFFSET + ctypes.sizeof(exit_proc_event)


def _leaves(
    structure: type[ctypes.Structure | ctypes.Union], base: int, prefix: str
) -> list[tuple[str, int, int]]:
    """(dotted name, offset, size) of every scalar field, in offset order."""
    out: list[tuple[str, int, int]] = []
    for name, ctype, *_ in structure._fields_:
        descriptor = getattr(structure, name)
        offset = base + descriptor.offset
        if name == "event_data":
            continue  # a union: the record reads it as words, see _RECORD_FIELDS
        if issubclass(ctype, ctypes.Structure | ctypes.Union):
            out += _leaves(ctype, offset, f"{prefix}{name}.")
        else:
            out.append((prefix + name, offset, descriptor.size))
    return out


#: The fields a record holds: the headers' fields, then the union read as exit's words
#: (every member's integer fields fall on those words; see index()).
_RECORD_FIELDS: Final = [
    *_leaves(proc_message, 0, ""),
    *_leaves(exit_proc_event, UNION_OFFSET, "event.event_data.exit."),
]
_UNSIGNED: Final = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _record_format(fields: list[tuple[str, int, int]]) -> str:
    out, at = ["="], 0
    for _name, offset, size in fields:
        if offset > at:
            out.append(f"{offset - at}x")
        out.append(_UNSIGNED[size])
        at = offset + size
    return "".join(out)


#: One message, decoded in one call: the hot loop's only unpacking.
RECORD: Final = struct.Struct(_record_format(_RECORD_FIELDS))
assert RECORD.size == RECORD_LEN
#: nlmsg_len and nlmsg_type, to walk the messages of a datagram.
NLMSG_LEN_TYPE: Final = struct.Struct(_record_format(_leaves(nlmsghdr, 0, "")[:2]))


def _field(path: str) -> tuple[int, int]:
    """(offset in a message, size) of a field named as in C, e.g. ``event.cpu`` or
    ``event.event_data.fork.child_tgid``."""
    structure: Any = proc_message  # then each nested structure or union on the path
    offset = 0
    *outer, last = path.split(".")
    for name in outer:
        offset += getattr(structure, name).offset
        structure = {field: ctype for field, ctype, *_ in structure._fields_}[name]
    descriptor = getattr(structure, last)
    return offset + descriptor.offset, descriptor.size


def index(path: str) -> int:
    """Position in a :data:`RECORD` tuple of the field named ``path`` (see _field)."""
    offset, size = _field(path)
    for i, (_name, at, width) in enumerate(_RECORD_FIELDS):
        if (at, width) == (offset, size):
            return i
    raise LookupError(f"{path} is not in a connector record")


# Positions of the fields the code reads, by the kernel's names.
NL_LEN: Final = index("nlh.nlmsg_len")
NL_TYPE: Final = index("nlh.nlmsg_type")
CN_IDX: Final = index("msg.id.idx")
CN_VAL: Final = index("msg.id.val")
CN_SEQ: Final = index("msg.seq")
CN_ACK: Final = index("msg.ack")
CN_LEN: Final = index("msg.len")
WHAT: Final = index("event.what")
CPU: Final = index("event.cpu")
TIMESTAMP: Final = index("event.timestamp_ns")
ACK_ERR: Final = index("event.event_data.ack.err")
FORK_PARENT_PID: Final = index("event.event_data.fork.parent_pid")
FORK_PARENT_TGID: Final = index("event.event_data.fork.parent_tgid")
FORK_CHILD_PID: Final = index("event.event_data.fork.child_pid")
FORK_CHILD_TGID: Final = index("event.event_data.fork.child_tgid")
EXEC_PROCESS_PID: Final = index("event.event_data.exec.process_pid")
EXEC_PROCESS_TGID: Final = index("event.event_data.exec.process_tgid")
EXIT_PROCESS_PID: Final = index("event.event_data.exit.process_pid")
EXIT_PROCESS_TGID: Final = index("event.event_data.exit.process_tgid")
EXIT_EXIT_CODE: Final = index("event.event_data.exit.exit_code")
EXIT_EXIT_SIGNAL: Final = index("event.event_data.exit.exit_signal")
EXIT_PARENT_PID: Final = index("event.event_data.exit.parent_pid")
EXIT_PARENT_TGID: Final = index("event.event_data.exit.parent_tgid")

#: A decoded message: the tuple RECORD yields, read with the positions above.
Record = tuple[int, ...]


def subscription(op: int, ack: int, pid: int | None = None) -> bytes:
    """The message that (un)subscribes (``op``: PROC_CN_MCAST_LISTEN or _IGNORE)."""
    message = subscription_message()
    message.nlh.nlmsg_len = ctypes.sizeof(subscription_message)
    message.nlh.nlmsg_type = NLMSG_DONE
    message.nlh.nlmsg_pid = os.getpid() if pid is None else pid
    message.msg.id.idx, message.msg.id.val = CN_IDX_PROC, CN_VAL_PROC
    message.msg.ack = ack
    message.msg.len = ctypes.sizeof(u32)
    message.op = op
    return bytes(message)


#: The sender address of everything the kernel multicasts to the cn_proc group.
KERNEL_SENDER: Final = sockaddr_nl(socket.AF_NETLINK, 0, 0, 1 << (CN_IDX_PROC - 1))

#: Structures declared here, by their C type (checked against the headers).
STRUCTURES: Final[dict[str, type[ctypes.Structure | ctypes.Union]]] = {
    "struct nlmsghdr": nlmsghdr,
    "struct sockaddr_nl": sockaddr_nl,
    "struct iovec": iovec,
    "struct msghdr": msghdr,
    "struct mmsghdr": mmsghdr,
    "struct cb_id": cb_id,
    "struct cn_msg": cn_msg,
    "struct proc_event": proc_event,
    "__typeof__(((struct proc_event *)0)->event_data)": event_data,
    "__typeof__(((struct proc_event *)0)->event_data.ack)": ack_proc_event,
    "struct fork_proc_event": fork_proc_event,
    "struct exec_proc_event": exec_proc_event,
    "struct id_proc_event": id_proc_event,
    "__typeof__(((struct id_proc_event *)0)->r)": id_real,
    "__typeof__(((struct id_proc_event *)0)->e)": id_effective,
    "struct sid_proc_event": sid_proc_event,
    "struct ptrace_proc_event": ptrace_proc_event,
    "struct comm_proc_event": comm_proc_event,
    "struct coredump_proc_event": coredump_proc_event,
    "struct exit_proc_event": exit_proc_event,
}

#: Constants of the headers declared here, by their C name (checked against the headers).
CONSTANTS: Final[dict[str, int]] = {
    name: value
    for name, value in globals().items()
    if name.startswith(("NETLINK_", "NLMSG_", "SO_", "CN_IDX_", "CN_VAL_", "PROC_"))
    and isinstance(value, int)
}
