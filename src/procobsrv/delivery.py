"""Calling one CallbackHandler: in order, never two calls at once, its errors counted.

A :class:`Delivery` is used by whichever thread delivers to the handler: the retrieval
thread itself when the handler is the scope's only subscriber (no hop, no window), else
the handler's own :class:`DeliveryThread`, which takes from the handler's window so that a
slow handler delays nobody else.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .callback import CallbackHandler
from .events import EventKind, QueuedItem
from .platform import Platform
from .threads import CustomThread
from .window import Window

log = logging.getLogger(__name__)

#: A handler method that keeps raising the same exception: the first is logged with its
#: traceback, then one summary line per this many repeats, and one when delivery ends.
ERROR_SUMMARY_EVERY = 10_000


class Delivery:
    """Hands events to ``handler`` with ``param``; counts what it delivered and what the
    handler raised. ``window.abandoned`` (read per event) stops it at once."""

    def __init__(self, name: str, handler: CallbackHandler, param: Any, window: Window) -> None:
        self.name = name
        self.handler = handler
        self.param = param
        self.window = window
        self.delivered: Counter[EventKind] = Counter()
        self.handler_errors = 0
        self._errors: Counter[tuple[str, type[BaseException]]] = Counter()
        self._pid = os.getpid()

    def deliver(self, items: Sequence[QueuedItem], lost: int) -> None:
        """``on_events_lost(lost)`` if anything was lost, then each item, in order."""
        handler, param, window = self.handler, self.param, self.window
        if lost:
            try:
                handler.on_events_lost(lost, param)
            except Exception as exc:
                self._raised("on_events_lost", exc, lost)
        on_event, delivered = handler.on_process_event, self.delivered
        for item in items:
            try:
                on_event(item, param)
            except Exception as exc:
                self._raised("on_process_event", exc, item)
            delivered[item.kind] += 1
            if window.abandoned:
                self.leave_forked_child()
                break

    def leave_forked_child(self) -> None:
        """If the handler forked and returned in the child, this thread (the child's only
        one) belongs to the parent's monitoring: end the child here, touching nothing (its
        fds were closed at fork; their numbers may be reused)."""
        if os.getpid() != self._pid:
            os._exit(0)

    def tell_error(self, error: BaseException) -> None:
        """Monitoring ended because the kernel side failed: ``on_error``."""
        try:
            self.handler.on_error(error, self.param)
        except Exception as exc:
            self._raised("on_error", exc, error)

    def _raised(self, method: str, exc: Exception, about: object) -> None:
        self.handler_errors += 1
        key = (method, type(exc))
        self._errors[key] += 1
        n = self._errors[key]
        if n == 1:
            log.error(
                "%s.%s raised %s on %r; delivery goes on (repeats are counted, not logged)",
                self.name,
                method,
                type(exc).__name__,
                about,
                exc_info=exc,
            )
        elif n % ERROR_SUMMARY_EVERY == 1:
            self._summary(key, ERROR_SUMMARY_EVERY)

    def _summary(self, key: tuple[str, type[BaseException]], repeats: int) -> None:
        method, kind = key
        log.error(
            "%s.%s raised %s %d more times (%d in all)",
            self.name,
            method,
            kind.__name__,
            repeats,
            self._errors[key],
        )

    def summarise_errors(self) -> None:
        """One last summary line per kind of error repeated since the last one."""
        for key, n in list(self._errors.items()):
            repeats = (n - 1) % ERROR_SUMMARY_EVERY
            if repeats:
                self._summary(key, repeats)
        self._errors.clear()


class DeliveryThread(CustomThread):
    """A handler's own thread, for when the scope has several subscribers: takes from the
    handler's window and delivers, until the window ends; then ``on_error`` if monitoring
    failed (``failure`` set before the window ended)."""

    def __init__(self, platform: Platform, delivery: Delivery) -> None:
        # It waits on the window, not on a shutdown event: it ends when the window does.
        super().__init__(platform, f"procobsrv-deliver-{delivery.name}", eager_shutdown=False)
        self.delivery = delivery
        self.failure: BaseException | None = None

    def run(self) -> None:
        delivery, window = self.delivery, self.delivery.window
        try:
            while not window.abandoned:  # read before taking the lock (see fork)
                got = window.take()
                if got is None:
                    break
                delivery.deliver(*got)
            if not window.abandoned and self.failure is not None:
                delivery.tell_error(self.failure)
        finally:
            delivery.leave_forked_child()
            delivery.summarise_errors()
