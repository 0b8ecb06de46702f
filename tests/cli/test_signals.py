"""cli/signals.py: a signal runs its action inside the block, and the handler it had before
comes back after it."""

from __future__ import annotations

import os
import signal

from procobsrv.cli.signals import Signals, handling, on_signals


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


def test_a_signal_ignored_after_the_block_is_ignored_not_restored() -> None:
    """What a summary after the block needs: SIGHUP's default action would cut it short."""
    seen: list[str] = []
    before = signal.getsignal(signal.SIGUSR1)
    try:
        with on_signals(
            {signal.SIGUSR1: lambda: seen.append("action")}, ignored_after=[signal.SIGUSR1]
        ):
            os.kill(os.getpid(), signal.SIGUSR1)
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGUSR1)  # the default action would end pytest
    finally:
        signal.signal(signal.SIGUSR1, before)
    assert seen == ["action"]


def test_watch_signals_stop_and_a_sighup_during_a_reopen_reopens_once_more_not_nested() -> None:
    """watch's rules: SIGINT and SIGTERM stop; with a reopen, SIGHUP reopens, and SIGHUPs that
    come while it reopens make one more reopen after it, never a nested one; once stopping,
    SIGHUP reopens nothing; after the block SIGHUP is ignored."""
    events: list[str] = []
    depth = 0

    def reopen() -> None:
        nonlocal depth
        depth += 1
        events.append(f"reopen at depth {depth}")
        if len(events) == 1:
            for _ in range(3):  # three more SIGHUPs while the first reopen runs
                os.kill(os.getpid(), signal.SIGHUP)
        depth -= 1

    before = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)}
    signals = Signals(lambda: events.append("stop"), reopen)
    try:
        with handling(signals):
            os.kill(os.getpid(), signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            signals.stopping = True
            os.kill(os.getpid(), signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) == before[signal.SIGINT]
        os.kill(os.getpid(), signal.SIGHUP)
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    assert events == ["reopen at depth 1", "reopen at depth 1", "stop", "stop"]


def test_without_a_reopen_sighup_stops() -> None:
    stops: list[int] = []
    before = signal.getsignal(signal.SIGHUP)
    try:
        with handling(Signals(lambda: stops.append(1))):
            os.kill(os.getpid(), signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, before)
    assert stops == [1]
