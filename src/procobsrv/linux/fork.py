"""Linux: what a forked child does with the monitoring it inherited.

A child of ``fork()`` gets a copy of the parent's fds (the sources' sockets and ring
buffers, the eventfds) but none of its other threads: the framework forgets the parent's
session there (``Platform.at_fork_in_child``) and these fds are closed
(``Platform.close_inherited``), so that neither the child nor a number it reuses touches
the parent's subscription.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence


def at_fork_in_child(hook: Callable[[], None]) -> None:
    """Run ``hook`` in the child of every later ``fork()``, on the thread that forked."""
    os.register_at_fork(after_in_child=hook)


def close_inherited(fds: Sequence[int]) -> None:
    """Close fds the child inherited; one already closed is no error."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
