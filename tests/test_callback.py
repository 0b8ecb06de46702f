"""CallbackHandler: one abstract method; the other two have defaults that log."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from procobsrv import CallbackHandler, QueuedItem


class OnlyEvents(CallbackHandler):
    """A handler that overrides what it must and nothing else."""

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        pass


def test_a_handler_must_define_on_process_event() -> None:
    with pytest.raises(TypeError, match="on_process_event"):
        CallbackHandler()  # type: ignore[abstract]


def test_default_on_events_lost_warns_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="procobsrv.callback"):
        OnlyEvents().on_events_lost(42, "param")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "42 process events were lost")
    ]


def test_default_on_error_logs_an_error_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="procobsrv.callback"):
        OnlyEvents().on_error(RuntimeError("driver unloaded"), "param")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "process monitoring stopped: driver unloaded")
    ]
