"""The user's side of the contract: subclass CallbackHandler."""

from __future__ import annotations

import abc
import logging
from typing import Any

from .events import QueuedItem

log = logging.getLogger(__name__)


class CallbackHandler(abc.ABC):
    """Receives process events, one at a time, on one procobsrv thread at a time: the
    retrieval thread while it is the scope's only subscriber, else a delivery thread of
    its own.

    Calls never overlap, and they come in the order the kernel reported the events
    (Linux: per CPU; events from different CPUs are not ordered with each other); every
    subscriber of the scope sees them in the same order. A handler may block: only what
    is held for it fills up (its window, or the kernel queue while it is alone), and then
    drops by its policy, counted in ``on_events_lost``; no other subscriber waits.
    """

    @abc.abstractmethod
    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        """A process was created, exec'd or exited. ``param`` is start_monitoring's argument."""

    def on_events_lost(self, count: int, param: Any) -> None:
        """``count`` events were lost (kernel overflow or a full queue); called before the
        events that were drained together with the news of the loss."""
        log.warning("%d process events were lost", count)

    def on_error(self, error: BaseException, param: Any) -> None:
        """Monitoring stopped on its own because the kernel side failed (e.g. the driver was
        unloaded under it); ``error`` says why. Called after every event queued before the
        failure, once monitoring is over: ``is_monitoring`` is False and the kernel side is
        released, so ``start_monitoring`` may be called again, even from here."""
        log.error("process monitoring stopped: %s", error)
