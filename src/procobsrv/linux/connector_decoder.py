"""Decoding connector datagrams into raw proc events, with exact loss accounting.

A datagram holds one or more netlink messages; each carries a ``cn_msg`` and a
``proc_event``. Nothing here raises on bad input: every defect is counted and skipped.

Loss: the kernel numbers messages per CPU (``cn_msg.seq``) and names the CPU in
``proc_event.cpu``; a jump in one CPU's sequence is exactly the number of messages we
never received (the socket buffer overflowed). Acks (``what == NONE``) take sequence
numbers too, which is why they pass through here like any event.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Final, TypeAlias

from .connector_abi import (
    CN_IDX,
    CN_IDX_PROC,
    CN_LEN,
    CN_MSG_LEN,
    CN_SEQ,
    CN_VAL,
    CN_VAL_PROC,
    CPU,
    EVENT_HEADER_LEN,
    NL_LEN,
    NL_TYPE,
    NLMSG_ALIGNTO,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_HDRLEN,
    NLMSG_LEN_TYPE,
    NLMSG_NOOP,
    NLMSG_OVERRUN,
    RECORD,
    RECORD_LEN,
    U32_MASK,
    UNION_LEN,
    WHAT,
    Record,
    nlmsg_align,
)

log = logging.getLogger(__name__)

#: Where cn_msg's payload (the proc_event) starts in a message.
_PAYLOAD_OFFSET: Final = NLMSG_HDRLEN + CN_MSG_LEN
#: cn_msg.len each kind of event needs at least: its header and its union member.
_EVENT_LEN: Final = {what: EVENT_HEADER_LEN + size for what, size in UNION_LEN.items()}
#: cn_msg.seq is a u32 (differences modulo 2**32, U32_MASK): one of more than half the
#: range is the sequence going back, not a loss.
_SEQ_HALF: Final = 0x80000000
_ZEROS: Final = bytes(RECORD_LEN)
#: The length ReceiveRing gives a datagram whose sender is not the kernel.
FORGED: Final = -2


def possible_cpus() -> int:
    """How many CPU numbers this machine can ever use (``/sys/devices/system/cpu/possible``,
    e.g. ``0-1`` or ``0-3,8-11``: one more than the highest)."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            ranges = f.read().strip()
        return 1 + max(int(part.split("-")[-1]) for part in ranges.split(","))
    except (OSError, ValueError):
        return os.cpu_count() or 1


#: What datagrams arrive in: bytes in tests and replays, the receive ring's ctypes buffer live.
Buffer: TypeAlias = "bytes | bytearray | memoryview | ctypes.Array[ctypes.c_char]"


class Decoder:
    """Turns datagrams into records; keeps per-CPU sequence state and defect counters."""

    def __init__(self, cpus: int | None = None) -> None:
        #: Records naming a CPU at or above this are no sequence to follow (see _account).
        self.cpus = possible_cpus() if cpus is None else cpus
        self._last_seq: dict[int, int] = {}
        self.lost = 0  # messages the kernel sent that never reached us (sequence gaps)
        self.malformed = 0  # truncated or inconsistent messages
        self.unknown = 0  # well-formed messages of a kind we do not know
        self.netlink_errors = 0  # NLMSG_ERROR / NLMSG_OVERRUN from the kernel
        self.forged = 0  # datagrams another process sent to our port id: dropped

    def restart(self) -> None:
        """Forget every CPU's sequence: a new subscription starts counting afresh (the
        kernel's counters ran on while nobody listened; that is no loss)."""
        self._last_seq.clear()

    def take_lost(self) -> int:
        lost, self.lost = self.lost, 0
        return lost

    def decode(self, buf: Buffer, offset: int, length: int, out: list[Record]) -> None:
        """Append the records of the datagram at ``buf[offset:offset+length]`` to ``out``."""
        if length >= RECORD_LEN and offset >= 0 and offset + length <= len(buf):
            # Fast path for the kernel's usual shape: one whole, well-formed proc event filling
            # the datagram. Same checks as below, without the per-message calls; anything
            # else falls through to the general walk (nothing has been counted yet).
            rec = RECORD.unpack_from(buf, offset)
            nl_len, cn_len = rec[NL_LEN], rec[CN_LEN]
            need = _EVENT_LEN.get(rec[WHAT])
            if (
                RECORD_LEN <= nl_len <= length < nl_len + NLMSG_ALIGNTO
                and rec[NL_TYPE] == NLMSG_DONE
                and rec[CN_IDX] == CN_IDX_PROC
                and rec[CN_VAL] == CN_VAL_PROC
                and _PAYLOAD_OFFSET + cn_len <= nl_len
                and need is not None
                and cn_len >= need
            ):
                cpu = rec[CPU]
                if cpu < self.cpus:  # also skips connector_abi.NO_CPU
                    seq = rec[CN_SEQ]
                    last = self._last_seq.get(cpu)
                    if last is None or (seq - last - 1) & U32_MASK:
                        self._account(cpu, seq)
                    else:
                        self._last_seq[cpu] = seq
                out.append(rec)
                return
        if length == FORGED:
            self.forged += 1
            log.debug("dropped a datagram that the kernel did not send (%d so far)", self.forged)
            return
        if length < 0 or offset < 0 or offset + length > len(buf):
            self._defect("malformed", "datagram larger than its buffer (truncated)")
            return
        end = offset + length
        pos = offset
        while end - pos >= NLMSG_HDRLEN:
            nl_len, nl_type = NLMSG_LEN_TYPE.unpack_from(buf, pos)
            if nl_len < NLMSG_HDRLEN or nl_len > end - pos:
                self._defect(
                    "malformed", f"netlink length {nl_len} outside {NLMSG_HDRLEN}..{end - pos}"
                )
                return
            if nl_type == NLMSG_DONE:
                self._decode_message(buf, pos, nl_len, out)
            elif nl_type in (NLMSG_ERROR, NLMSG_OVERRUN):
                self._defect("netlink_errors", f"netlink message type {nl_type} from the kernel")
            elif nl_type != NLMSG_NOOP:
                self._defect("unknown", f"netlink message type {nl_type}")
            pos += nlmsg_align(nl_len)
        if pos < end and end - pos >= NLMSG_ALIGNTO:
            self._defect("malformed", f"{end - pos} trailing bytes")

    def _decode_message(self, buf: Buffer, pos: int, nl_len: int, out: list[Record]) -> None:
        if nl_len >= RECORD_LEN:
            rec = RECORD.unpack_from(buf, pos)
        elif nl_len >= NLMSG_HDRLEN + CN_MSG_LEN + EVENT_HEADER_LEN:
            # Shorter than the largest event: pad so one layout serves; checked below.
            rec = RECORD.unpack_from(
                memoryview(buf)[pos : pos + nl_len].tobytes() + _ZEROS[nl_len:], 0
            )
        else:
            self._defect("malformed", f"message of {nl_len} bytes cannot hold a proc event")
            return
        if rec[CN_IDX] != CN_IDX_PROC or rec[CN_VAL] != CN_VAL_PROC:
            self._defect("malformed", f"connector id {rec[CN_IDX]}.{rec[CN_VAL]} is not cn_proc")
            return
        cn_len = rec[CN_LEN]
        if NLMSG_HDRLEN + CN_MSG_LEN + cn_len > nl_len:
            self._defect("malformed", f"cn_msg length {cn_len} points past the message")
            return
        if cn_len < EVENT_HEADER_LEN:
            self._defect("malformed", f"cn_msg length {cn_len} too short for a proc event")
            return
        self._account(rec[CPU], rec[CN_SEQ])
        what = rec[WHAT]
        need = UNION_LEN.get(what)
        if need is None:
            self._defect("unknown", f"proc event what=0x{what:x}")
            return
        if cn_len < EVENT_HEADER_LEN + need:
            self._defect(
                "malformed",
                f"proc event 0x{what:x} of {cn_len} bytes, needs {EVENT_HEADER_LEN + need}",
            )
            return
        out.append(rec)

    def _account(self, cpu: int, seq: int) -> None:
        # Only real CPUs have a sequence: cpu -1 (old kernels' acks) or a number this machine
        # cannot have never starts one, so it can neither fake a loss nor grow the table.
        if cpu >= self.cpus:
            return
        last = self._last_seq.get(cpu)
        self._last_seq[cpu] = seq
        if last is None:
            return
        gap = (seq - last - 1) & U32_MASK
        if gap == 0:
            return
        if gap < _SEQ_HALF:
            self.lost += gap
        else:  # went backwards: not a loss; restart this CPU's count from here
            log.debug("cpu %d sequence went back from %d to %d", cpu, last, seq)

    def _defect(self, counter: str, what: str) -> None:
        count = getattr(self, counter) + 1
        setattr(self, counter, count)
        level = logging.WARNING if count == 1 else logging.DEBUG
        log.log(level, "skipped a connector message (%s): %s", counter.replace("_", " "), what)
