"""The small interface between the article's framework and the kernel that feeds it.

The framework (``process_monitor``, ``container``, ``retrieval``, ``session``...) only ever
talks to a :class:`Platform`: kernel objects to wait on (events, a mutex, a way to wait for any of
several at once) and a :class:`KernelSource` that publishes process events, and the few
things the system does to a process (real-time threads, what a forked child inherits).
Each kernel provides one: ``procobsrv.linux`` (the process-events connector, fds and
``poll``) and ``procobsrv.windows`` (ProcObsrv.sys, HANDLEs and ``WaitForMultipleObjects``);
``procobsrv.host.current_platform()`` picks the one this interpreter runs on (this module
imports neither).
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from .errors import MonitorError
from .events import QueuedItem


class SyncEvent(Protocol):
    """A manual-reset event that can be waited on together with other handles."""

    @property
    def wait_handle(self) -> int:
        """What :meth:`Waiter.wait` waits on: an fd on Linux, a HANDLE on Windows."""
        ...

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def is_set(self) -> bool: ...

    def close(self) -> None: ...


class Mutex(Protocol):
    """A mutual-exclusion lock used as a context manager."""

    def __enter__(self) -> object: ...

    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None: ...


class Waiter(Protocol):
    """Waits for the first of a fixed set of handles to be signalled."""

    def wait(self, timeout: float | None = None) -> int | None:
        """Index of a signalled handle (the lowest one), or None on timeout."""
        ...

    def close(self) -> None: ...


@dataclass
class Batch:
    """What one :meth:`KernelSource.fetch_batch` call returns."""

    items: list[QueuedItem] = field(default_factory=list)
    #: Events the kernel dropped before we could read them (exact where the kernel lets us count).
    lost: int = 0


class KernelSource(abc.ABC):
    """The publisher: the kernel side that announces process events.

    Lifecycle: :meth:`open`, then repeatedly wait on :attr:`wait_handle` and call
    :meth:`fetch_batch`, then :meth:`close`. Only the monitor thread calls these.

    The contract every source honours (``tests/test_source_contract.py`` checks it for each):

    - Its dependencies (the kernel's API, a socket, a library) are keyword arguments of its
      constructor, with the production ones as defaults; nothing else swaps them.
    - :meth:`close` is safe before :meth:`open` and twice. :meth:`open` on an open source
      raises MonitorError ("... already open") and changes nothing; a closed source may be
      opened again, and then counts as a new subscription (see ``lost``).
    - :attr:`wait_handle` and :meth:`fetch_batch` of a source that is not open raise
      MonitorError. :meth:`fetch_batch` with nothing ready returns an empty Batch at once.
    - :meth:`close` releases every fd, mapping and handle that :meth:`open` took.
    - ``Batch.lost`` is exact: the events the kernel dropped since the previous batch, each
      counted once; events of a time the source was closed are not losses.

    Which clock: every item's ``QueuedItem.monotonic_ns`` and ``start_ns`` are nanoseconds
    on the source's monotonic clock (one that is never set and never goes back), which
    :meth:`monotonic_now_ns` reads; ``QueuedItem.timestamp`` is wall time, seconds since the
    Unix epoch. An event that happens between two calls of :meth:`monotonic_now_ns` carries
    a ``monotonic_ns`` between their results.
    """

    #: The name ``start_monitoring(source=...)`` knows this source by ("" if none).
    name: ClassVar[str] = ""

    @abc.abstractmethod
    def open(self) -> None:
        """Subscribe to the kernel; raises MonitorError with what to do when it cannot."""

    @property
    @abc.abstractmethod
    def wait_handle(self) -> int:
        """Signalled while events are ready to fetch."""

    @abc.abstractmethod
    def fetch_batch(self) -> Batch:
        """Everything ready now, without blocking (an empty batch when nothing is)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Unsubscribe and release every kernel resource; safe to call twice."""

    def monotonic_now_ns(self) -> int:
        """Now, in ns, on the clock of this source's ``monotonic_ns`` and ``start_ns``.

        The default is ``time.monotonic_ns()``: CLOCK_MONOTONIC on Linux, the clock of the
        connector and eBPF sources. A source whose kernel stamps events on another clock
        overrides it (ProcObsrv.sys: the interrupt time).
        """
        return time.monotonic_ns()

    def __enter__(self) -> KernelSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def not_open(source: str) -> MonitorError:
    """What every KernelSource raises when asked for its wait handle or a batch while it is
    not open: ``raise not_open("eBPF")``."""
    return MonitorError(f"the {source} source is not open")


@contextlib.contextmanager
def no_realtime_threads() -> Iterator[None]:
    """The default ``Platform.realtime_threads``: the system offers none."""
    raise MonitorError("real-time scheduling (SCHED_FIFO) is available on Linux only")
    yield  # a generator, so that the error comes on entering the block


def no_fork(hook: Callable[[], None]) -> None:
    """The default ``Platform.at_fork_in_child``: the system has no ``fork()``, so no
    process ever inherits another's monitoring; ``hook`` is never called."""


def nothing_inherited(handles: Sequence[int]) -> None:
    """The default ``Platform.close_inherited``: without ``fork()`` nothing is inherited."""


@dataclass(frozen=True)
class Platform:
    """Kernel objects and the event source of one operating system, and what the system
    does to a process (the defaults: a system without real-time threads or ``fork()``)."""

    name: str
    new_event: Callable[[], SyncEvent]
    new_mutex: Callable[[], Mutex]
    new_waiter: Callable[[Sequence[int]], Waiter]
    new_source: Callable[[], KernelSource]
    #: The name ``new_source``'s source answers to besides "auto" (e.g. "driver").
    default_source: str = ""
    #: Opens a source by name ("auto": the best one this process may use), when the platform
    #: has several; else ``new_source`` is the only one.
    open_named_source: Callable[[str], KernelSource] | None = None
    #: ``with platform.realtime_threads():`` threads started in the block run with real-time
    #: priority (``procobsrv watch --realtime``); raises MonitorError saying what to do when
    #: the system refuses or has none.
    realtime_threads: Callable[[], AbstractContextManager[None]] = no_realtime_threads
    #: Registers a hook run in the child of every later ``fork()``, on the thread that forked:
    #: the child has the parent's handles but none of its other threads.
    at_fork_in_child: Callable[[Callable[[], None]], None] = no_fork
    #: In such a child: release the parent's handles it inherited (wait handles of the
    #: parent's session, which the child must not use; their numbers may be reused).
    close_inherited: Callable[[Sequence[int]], None] = nothing_inherited


#: What ``start_monitoring(source=...)`` takes: a source, or a platform's name for one.
SourceChoice = KernelSource | str


def open_source(platform: Platform, source: SourceChoice | None) -> KernelSource:
    """The opened kernel source: ``source`` itself, or the one its name picks (None: "auto").

    Raises MonitorError saying what to do when it cannot open.
    """
    if isinstance(source, KernelSource):
        source.open()
        return source
    name = source or "auto"
    if platform.open_named_source is not None:
        return platform.open_named_source(name)
    if name not in ("auto", platform.default_source):
        known = ", ".join(repr(n) for n in ("auto", platform.default_source) if n)
        raise MonitorError(f"unknown source {name!r} on {platform.name}: use {known}")
    opened = platform.new_source()
    opened.open()
    return opened
