"""Signals as actions for the length of a block: the console commands' one way to say what
SIGINT, SIGTERM or SIGHUP do while they run (:func:`on_signals`), and ``watch``'s rules for
them (:class:`Signals`, :func:`handling`)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterable, Iterator
from types import FrameType


def signal_numbers(*names: str) -> list[int]:
    """The numbers of the signals ``names`` this system has (no SIGHUP on Windows)."""
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


@contextlib.contextmanager
def on_signals(
    actions: dict[int, Callable[[], None]], *, ignored_after: Iterable[int] = ()
) -> Iterator[None]:
    """Each signal of ``actions`` runs its action (on the main thread) while the block runs;
    the previous handlers come back after it, but for the signals of ``ignored_after``, which
    are ignored from then on (a summary that follows must not be cut short by SIGHUP)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        actions[signum]()

    ignored = set(ignored_after)
    previous = {s: signal.signal(s, handler) for s in actions}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, signal.SIG_IGN if s in ignored else h)


class Signals:
    """What each signal does to a running watch: the one place that says it. Each stops it
    with the summary (SIGHUP too: the terminal went away, or a service manager asks for a
    stop), except that with ``--output`` SIGHUP ``reopen``s the output (logrotate).

    Python runs a signal's handler between two bytecodes of the main thread, even inside
    the same handler: a SIGHUP that comes while the last one reopens the file is taken here
    as "reopen once more" after it, never nested (thousands at once would recurse, each
    level holding a file open). Once :attr:`stopping` is set, SIGHUP reopens nothing (the
    output is being closed)."""

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self, stop: Callable[[], None], reopen: Callable[[], None] | None = None) -> None:
        self.stop = stop
        self.reopen = reopen
        self.stopping = False
        self._reopen_again = False
        self._reopening = False

    def actions(self) -> dict[int, Callable[[], None]]:
        """Signal -> action, for :func:`on_signals`."""
        actions = dict.fromkeys(signal_numbers(*self.NAMES), self.stop)
        if self.reopen is not None:
            actions.update(dict.fromkeys(signal_numbers("SIGHUP"), self.hang_up))
        return actions

    def hang_up(self) -> None:
        """SIGHUP with a reopen: reopen, once more for any SIGHUP meanwhile."""
        assert self.reopen is not None
        self._reopen_again = True
        if self._reopening:
            return  # the reopen under way loops once more
        self._reopening = True
        try:
            while self._reopen_again and not self.stopping:
                self._reopen_again = False
                self.reopen()
        finally:
            self._reopening = False


def handling(signals: Signals) -> contextlib.AbstractContextManager[None]:
    """``signals``' actions while the block runs; after it, SIGHUP is ignored: the summary
    that follows must not be cut short by its default action."""
    return on_signals(signals.actions(), ignored_after=signal_numbers("SIGHUP"))
