"""The one place that knows how the process's ApplicationScope holds its kernel subscription.

Some tests must reach the running source (to break its socket, read its fd) or the monitor
thread (to read its counters), or need the scope without giving it a handler (the streams'
way). The path to them is private to ``procobsrv.scope`` (its ``_session``): when it
changes, only this module changes.
"""

from __future__ import annotations

import time

from procobsrv import ApplicationScope
from procobsrv.platform import KernelSource
from procobsrv.process_monitor import ProcessThreadMonitor
from procobsrv.session import Session

#: How often :func:`wait_for_source` looks for a session that another thread is starting.
_POLL_S = 0.01


def existing_scope() -> ApplicationScope | None:
    """The process's scope if anything made it yet, else None (never creates one)."""
    return ApplicationScope._instance


def shared_scope() -> ApplicationScope:
    """The process's scope, created without a handler if need be (what the streams use)."""
    return ApplicationScope.shared()


def running_session(scope: ApplicationScope | None = None) -> Session | None:
    """The kernel subscription ``scope`` (default: the process's) runs now, or None."""
    scope = scope if scope is not None else existing_scope()
    return scope._session if scope is not None else None


def running_source(scope: ApplicationScope | None = None) -> KernelSource:
    """The source of the subscription ``scope`` runs now; fails the test if none runs."""
    session = running_session(scope)
    assert session is not None, "the scope is not monitoring"
    return session.source


def running_monitor(scope: ApplicationScope | None = None) -> ProcessThreadMonitor | None:
    """The monitor thread of the subscription ``scope`` runs now, or None."""
    session = running_session(scope)
    return session.monitor if session is not None else None


def session_handles(scope: ApplicationScope | None = None) -> list[int]:
    """The fds of the running subscription: what a forked child inherits of it."""
    session = running_session(scope)
    assert session is not None, "the scope is not monitoring"
    return session.handles()


def wait_for_source(timeout: float) -> KernelSource | None:
    """The process's running source once another thread has started it, None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session = running_session()
        if session is not None:
            return session.source
        time.sleep(_POLL_S)
    return None
