"""The one decoder of the raw wait status both Linux sources receive."""

from __future__ import annotations

from pathlib import Path

from procobsrv.linux.wait_status import WAIT_STATUS, WAIT_STATUS_MASK, decode_wait_status
from tests.fakes import c_layout


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
