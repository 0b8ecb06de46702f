"""Ready-made CallbackHandlers that write one line per event: JSON lines, or any rendering.

Each is an ordinary :class:`CallbackHandler`: pass it to ``ApplicationScope.get_instance``
or to :func:`procobsrv.monitor`, or wrap it in a :class:`~procobsrv.filters.FilterHandler`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from .callback import CallbackHandler
from .events import QueuedItem


def json_line(item: QueuedItem) -> str:
    """One compact JSON object (``QueuedItem.as_dict``), the format of ``watch --json``."""
    return json.dumps(item.as_dict(), separators=(",", ":"))


def json_lost_line(count: int) -> str:
    """The JSON line that reports lost events: ``{"kind":"lost","count":N}``."""
    return json.dumps({"kind": "lost", "count": count}, separators=(",", ":"))


class LinesHandler(CallbackHandler):
    """Writes one line per event to a text stream (``render`` turns an item into the line).

    Losses are written too when ``render_lost`` is given, else logged. Each line is flushed
    by default so that a pipe (``| jq``, a log shipper) sees it at once.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        render: Callable[[QueuedItem], str] = json_line,
        render_lost: Callable[[int], str] | None = json_lost_line,
        *,
        flush: bool = True,
    ) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.render = render
        self.render_lost = render_lost
        self.flush = flush

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        self._write(self.render(item))

    def on_events_lost(self, count: int, param: Any) -> None:
        if self.render_lost is None:
            super().on_events_lost(count, param)
        else:
            self._write(self.render_lost(count))

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        if self.flush:
            self.stream.flush()


class JsonLinesHandler(LinesHandler):
    """JSON lines: one object per event (see :func:`json_line`), and
    ``{"kind":"lost","count":N}`` when events were lost. Default stream: ``sys.stdout``."""

    def __init__(self, stream: TextIO | None = None, *, flush: bool = True) -> None:
        super().__init__(stream, json_line, json_lost_line, flush=flush)
