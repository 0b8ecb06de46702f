"""The article's CustomThread: a thread with a shutdown event and an abstract ``run``."""

from __future__ import annotations

import abc
import logging
import sys
import threading
from collections.abc import Callable

from .platform import Platform, SyncEvent

log = logging.getLogger(__name__)


class CustomThread(abc.ABC):
    """A worker thread that ends when its shutdown event is set (or its ``run`` returns).

    The shutdown event is a kernel object (an eventfd or a Win32 event) so that ``run``
    can wait on it together with other handles in one call, instead of polling. Every
    thread procobsrv starts is one: the monitor, the retrieval thread and the delivery
    threads of the fan-out, and (as :class:`FunctionThread`) the tools' threads that end
    another way: ``watch``'s output writer and the NATS output's event loop.
    """

    def __init__(self, platform: Platform, name: str, *, eager_shutdown: bool = True) -> None:
        """``eager_shutdown=False``: a thread that does not wait on its shutdown event (it
        ends another way) gets it only if something asks for it, and holds no handle."""
        self.platform = platform
        self.name = name
        self._shutdown: SyncEvent | None = platform.new_event() if eager_shutdown else None
        self._shutdown_lock = threading.Lock()
        self.error: BaseException | None = None
        #: Called on the thread as its last act (releases what only it may still be using).
        self.on_exit: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None

    @property
    def shutdown(self) -> SyncEvent:
        """The event that asks the thread to end."""
        with self._shutdown_lock:
            if self._shutdown is None:
                self._shutdown = self.platform.new_event()
            return self._shutdown

    @abc.abstractmethod
    def run(self) -> None:
        """The thread's work; return when ``self.shutdown`` is set."""

    def start(self) -> None:
        # Daemon: a program that forgets stop_monitoring() still exits (atexit stops us cleanly).
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            self.error = exc
            log.exception("%s stopped on an error", self.name)
        finally:
            if self.on_exit is not None:
                self.on_exit()

    @property
    def started(self) -> bool:
        """True once :meth:`start` was called."""
        return self._thread is not None

    def is_current(self) -> bool:
        """True when called from this thread itself."""
        return self._thread is not None and self._thread is threading.current_thread()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: for ever) for the thread to end; True once
        it has (or never started). From the thread itself it does not wait."""
        thread = self._thread
        if thread is None:
            return True
        if not self.is_current():
            thread.join(timeout)
        return not thread.is_alive()

    def stop(self) -> None:
        """Ask the thread to end and wait until it has (unless called from the thread itself)."""
        self.shutdown.set()
        self.join()

    def where(self, skip: str = "") -> str:
        """Where the thread is now: its innermost frame outside the file ``skip`` (for the
        log of a stop that timed out: the handler's own code, not the framework's loop)."""
        thread = self._thread
        # The only way to see another thread's stack; CPython's, and documented as such.
        frame = sys._current_frames().get(thread.ident or -1) if thread is not None else None
        spot = "?"
        while frame is not None and frame.f_code.co_filename != skip:
            spot = f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})"
            frame = frame.f_back  # outwards, up to the framework's call
        return spot

    def close(self) -> None:
        """Release the shutdown event; call after ``stop``."""
        if self._shutdown is not None:
            self._shutdown.close()


class FunctionThread(CustomThread):
    """A thread that runs one function and ends when it returns: for work that waits on a
    condition or an event loop and is ended through it, not through the shutdown event
    (which it creates only if asked, as ``eager_shutdown=False`` says)."""

    def __init__(self, platform: Platform, name: str, target: Callable[[], None]) -> None:
        super().__init__(platform, name, eager_shutdown=False)
        self._target = target

    def run(self) -> None:
        self._target()
