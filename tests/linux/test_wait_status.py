"""The one decoder of the raw wait status both Linux sources receive."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from procobsrv.events import EventKind, QueuedItem
from procobsrv.linux import connector_abi as abi
from procobsrv.linux import ebpf_decoder
from procobsrv.linux.ebpf_abi import PO_EXIT
from procobsrv.linux.wait_status import WAIT_STATUS, WAIT_STATUS_MASK, decode_wait_status
from tests.fakes import c_layout
from tests.fakes.connector import fork, message, replay_source
from tests.fakes.ebpf import record


def test_wait_status() -> None:
    assert decode_wait_status(0x100) == (1, None, False)
    assert decode_wait_status(0x700) == (7, None, False)
    assert decode_wait_status(9) == (None, 9, False)
    assert decode_wait_status(0x86) == (None, 6, True)  # SIGABRT with core


def test_wait_status_table_is_the_decoder_function() -> None:
    assert len(WAIT_STATUS) == WAIT_STATUS_MASK + 1
    assert all(WAIT_STATUS[s] == decode_wait_status(s) for s in range(0x10000))
    # Bits above the 16 of a wait status never change the answer (forged exit codes).
    assert decode_wait_status(0x10100) == WAIT_STATUS[0x10100 & WAIT_STATUS_MASK]


#: Statuses a process can end with: exit(code), or death by a signal with or without core.
ENDINGS = [code << 8 for code in (0, 1, 7, 128, 255)] + [
    sig | core for sig in (1, 6, 9, 11, 15, 31, 64) for core in (0, 0x80)
]


def test_decoder_agrees_with_the_c_library_macros(tmp_path: Path) -> None:
    """WIFEXITED/WEXITSTATUS/WTERMSIG/WCOREDUMP of <sys/wait.h>, compiled, say the same."""
    checks = []
    for status in ENDINGS:
        code, sig, core = decode_wait_status(status)
        exited = int(code is not None)
        checks.append((f"(WIFEXITED({status}) != 0) == {exited}", f"exited? {status}"))
        if code is not None:
            checks.append((f"WEXITSTATUS({status}) == {code}", f"exit code of {status}"))
        else:
            checks.append((f"WTERMSIG({status}) == {sig}", f"signal of {status}"))
            checks.append((f"(WCOREDUMP({status}) != 0) == {int(core)}", f"core flag of {status}"))
    source = c_layout.layout_asserts(["<sys/wait.h>"], {}, {}, checks)
    result = c_layout.compile_c("gcc", source, tmp_path)
    assert result.returncode == 0, result.stderr
    broken = source.replace("WTERMSIG(9) == 9", "WTERMSIG(9) == 8")
    assert broken != source and c_layout.compile_c("gcc", broken, tmp_path).returncode != 0


def connector_exit(status: int, pid: int = 4242, *, forked: bool = False) -> QueuedItem:
    """The item the connector source makes of a crafted exit message carrying ``status``
    (``forked``: of a process whose fork it saw, the other path through the source)."""
    exit_event = abi.exit_proc_event(
        process_pid=pid, process_tgid=pid, exit_code=status, exit_signal=17, parent_pid=1
    )
    source, replay = replay_source()
    source.open()
    try:
        exit_message = message(abi.PROC_EVENT_EXIT, bytes(abi.event_data(exit=exit_event)))
        replay.publish([fork(pid, 1), exit_message] if forked else [exit_message])
        *_, item = source.fetch_batch().items
    finally:
        source.close()
    return item


def ebpf_exit(status: int, pid: int = 4242) -> QueuedItem:
    """The item the eBPF decoder makes of a crafted exit record carrying ``status``."""
    data = record(PO_EXIT, pid, status=status)
    out: list[QueuedItem] = []
    ebpf_decoder.Decoder().decode(data, [(0, len(data))], out)
    (item,) = out
    return item


def connector_exit_after_fork(status: int) -> QueuedItem:
    return connector_exit(status, forked=True)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0x700, (7, None, False)),  # exit(7)
        (0, (0, None, False)),  # exit(0)
        (9, (None, 9, False)),  # killed by SIGKILL
        (0x86, (None, 6, True)),  # SIGABRT, core dumped
    ],
)
@pytest.mark.parametrize(
    "decode",
    [connector_exit, connector_exit_after_fork, ebpf_exit],
    ids=["connector", "connector-after-fork", "ebpf"],
)
def test_both_decoders_put_the_status_in_the_right_fields(
    decode: Callable[[int], QueuedItem], status: int, expected: tuple[int | None, int | None, bool]
) -> None:
    """The decoders build items by position (events.new_item): a swapped exit_code and
    signal would show here, without a kernel."""
    item = decode(status)
    assert item.kind is EventKind.EXITED and item.process_id == 4242
    assert (item.exit_code, item.signal, item.core_dumped) == expected
