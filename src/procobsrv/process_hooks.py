"""What the process itself does to monitoring: its exit, and ``fork()``.

The scope registers here (once) a hook for the interpreter's exit (detach every subscriber,
within a bound) and one for the child of every later ``fork()`` (forget the parent's
session: its threads did not come along). Forks are watched through the platform: a
system without ``fork()`` registers nothing.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable

from .errors import MonitorError
from .host import current_platform

#: What is registered already (once per process).
_registered: set[str] = set()


def at_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` at the interpreter's exit (before its daemon threads are dropped)."""
    if _once("exit"):
        atexit.register(hook)


def at_fork_in_child(hook: Callable[[], None]) -> None:
    """Run ``hook`` in the child of every later ``fork()``, on the thread that forked (a
    system procobsrv cannot monitor, or without ``fork()``, registers nothing)."""
    try:
        platform = current_platform()
    except MonitorError:
        return  # no session will ever start here
    if _once("fork"):
        platform.at_fork_in_child(hook)


def _once(what: str) -> bool:
    # No lock: a fork may copy one held. Two threads may both register; the hooks are
    # harmless when run twice.
    first = what not in _registered
    _registered.add(what)
    return first
