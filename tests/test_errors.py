"""MonitorError: the one exception type users catch, exported at the top level."""

from __future__ import annotations

import procobsrv
from procobsrv.errors import MonitorError


def test_monitor_error_is_the_top_level_name_and_a_runtime_error() -> None:
    assert procobsrv.MonitorError is MonitorError
    # Code written for the article's exceptions catches RuntimeError; it still catches ours.
    assert issubclass(MonitorError, RuntimeError)
    assert str(MonitorError("no permission: run as root")) == "no permission: run as root"
