"""Filtering: a predicate on events (:class:`EventFilter`) and the handler that applies it.

A :class:`FilterHandler` wraps any other :class:`CallbackHandler` and passes on only the
events its filter accepts; ``watch()`` and ``procobsrv watch`` use the same kinds and
patterns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from .callback import CallbackHandler
from .containers import matches
from .events import EventKind, QueuedItem

#: A regular expression, as text or compiled; it is *searched* (``re.search``), not matched.
Pattern = str | re.Pattern[str]


def _compile(pattern: Pattern | None) -> re.Pattern[str] | None:
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    return re.compile(pattern)


def kind_set(
    kinds: Iterable[EventKind | str] | EventKind | str | None,
) -> frozenset[EventKind] | None:
    """EventKinds (or their values, ``"exec"``), one or several, as a set; None stays None."""
    if kinds is None:
        return None
    if isinstance(kinds, (str, EventKind)):
        kinds = [kinds]
    return frozenset(EventKind(k) for k in kinds)


class EventFilter:
    """A predicate on QueuedItems; every criterion given must hold (none given: all pass).

    - ``kinds``: EventKinds (or their values, ``"exec"``).
    - ``image``: searched in the program's path.
    - ``command_line``: searched in the arguments joined by spaces.
    - ``match``: searched in the path and the arguments joined by spaces (``watch --match``).
    - ``uids``: effective user ids.
    - ``containers``: container ids, or their beginnings (a short id as ``docker ps``
      shows it): the process runs in one of them (``QueuedItem.container``).
    - ``predicate``: a test of your own, asked last.

    An item that lacks the field a criterion needs (image, argv or uid could not be read
    before a short-lived process vanished) does not pass that criterion.
    """

    __slots__ = ("command_line", "containers", "image", "kinds", "match", "predicate", "uids")

    def __init__(
        self,
        *,
        kinds: Iterable[EventKind | str] | None = None,
        image: Pattern | None = None,
        command_line: Pattern | None = None,
        match: Pattern | None = None,
        uids: Iterable[int] | None = None,
        containers: Iterable[str] | None = None,
        predicate: Callable[[QueuedItem], bool] | None = None,
    ) -> None:
        self.kinds = kind_set(kinds)
        self.image = _compile(image)
        self.command_line = _compile(command_line)
        self.match = _compile(match)
        self.uids = None if uids is None else frozenset(uids)
        self.containers = None if containers is None else tuple(containers)
        self.predicate = predicate

    def __call__(self, item: QueuedItem) -> bool:
        if self.kinds is not None and item.kind not in self.kinds:
            return False
        if self.uids is not None and item.uid not in self.uids:
            return False
        if self.image is not None and (item.image is None or not self.image.search(item.image)):
            return False
        if self.command_line is not None and (
            item.command_line is None or not self.command_line.search(" ".join(item.command_line))
        ):
            return False
        if self.match is not None:
            text = " ".join(filter(None, [item.image, *(item.command_line or ())]))
            if self.match.search(text) is None:
                return False
        if self.containers is not None and not matches(item.container, self.containers):
            return False
        return self.predicate is None or self.predicate(item)


class FilterHandler(CallbackHandler):
    """Passes to ``inner`` only the events ``event_filter`` accepts; losses and errors
    always pass.

    ``event_filter`` is an :class:`EventFilter` (``FilterHandler(inner,
    EventFilter(kinds=["exec"], image="python"))``) or any predicate on QueuedItems.
    ``passed`` and ``rejected`` count the events either way.
    """

    def __init__(self, inner: CallbackHandler, event_filter: Callable[[QueuedItem], bool]) -> None:
        self.inner = inner
        self.filter = event_filter
        self.passed = 0
        self.rejected = 0

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        if self.filter(item):
            self.passed += 1
            self.inner.on_process_event(item, param)
        else:
            self.rejected += 1

    def on_events_lost(self, count: int, param: Any) -> None:
        # Unknown events may have matched: the inner handler must hear of the loss.
        self.inner.on_events_lost(count, param)

    def on_error(self, error: BaseException, param: Any) -> None:
        self.inner.on_error(error, param)
