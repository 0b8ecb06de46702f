"""cli/signals.py: a signal runs its action inside the block, and the handler it had before
comes back after it."""

from __future__ import annotations

import os
import signal

from procobsrv.cli.signals import on_signals


def test_a_signal_runs_its_action_in_the_block_and_the_old_handler_returns() -> None:
    seen: list[str] = []
    before = signal.getsignal(signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append("old"))
    try:
        with on_signals({signal.SIGUSR1: lambda: seen.append("action")}):
            os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, before)
    assert seen == ["action", "old"]
