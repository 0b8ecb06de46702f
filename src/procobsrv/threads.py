"""The article's CustomThread: a thread with a shutdown event and an abstract ``run``."""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable

from .platform import Platform, SyncEvent

log = logging.getLogger(__name__)


class CustomThread(abc.ABC):
    """A worker thread that ends when its shutdown event is set.

    The shutdown event is a kernel object (an eventfd or a Win32 event) so that ``run``
    can wait on it together with other handles in one call, instead of polling.
    """

    def __init__(self, platform: Platform, name: str) -> None:
        self.platform = platform
        self.name = name
        self.shutdown: SyncEvent = platform.new_event()
        self.error: BaseException | None = None
        #: Called on the thread as its last act (releases what only it may still be using).
        self.on_exit: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None

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

    def is_current(self) -> bool:
        """True when called from this thread itself."""
        return self._thread is not None and self._thread is threading.current_thread()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Ask the thread to end and wait until it has (unless called from the thread itself)."""
        self.shutdown.set()
        if self._thread is not None and not self.is_current():
            self._thread.join()

    def close(self) -> None:
        """Release the shutdown event; call after ``stop``."""
        self.shutdown.close()
