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
    shared: dict[WaitStatus, WaitStatus] = {}  # about 500 distinct answers: store each once
    return tuple(
        shared.setdefault(answer, answer)
        for answer in map(decode_wait_status, range(WAIT_STATUS_MASK + 1))
    )


#: decode_wait_status of every status, so that the decoders pay one index per exit:
#: ``WAIT_STATUS[status & WAIT_STATUS_MASK]``.
WAIT_STATUS: Final = _wait_status_table()
