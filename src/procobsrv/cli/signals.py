"""Signals as actions for the length of a block: the console commands' one way to say what
SIGINT, SIGTERM or SIGHUP do while they run."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType


@contextlib.contextmanager
def on_signals(actions: dict[int, Callable[[], None]]) -> Iterator[None]:
    """Each signal of ``actions`` runs its action (on the main thread) while the block runs;
    the previous handlers come back after it."""

    def handler(signum: int, frame: FrameType | None) -> None:
        actions[signum]()

    previous = {s: signal.signal(s, handler) for s in actions}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
