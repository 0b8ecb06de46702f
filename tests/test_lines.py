"""JsonLinesHandler on real processes: one parsable object per event, losses as lines."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time

import pytest

from procobsrv import JsonLinesHandler, monitor
from tests.fakes.gauges import leaves_nothing_behind

pytestmark = pytest.mark.timeout(30)


@pytest.mark.kernel
@pytest.mark.usefixtures("connector")
def test_json_lines_handler_writes_one_parsable_object_per_event() -> None:
    out = io.StringIO()
    handler = JsonLinesHandler(out)
    with leaves_nothing_behind(), monitor(handler):
        child = subprocess.Popen(["sh", "-c", "sleep 0.1; exit 7"])  # lives on to be read
        child.wait()
        handler.on_events_lost(3, None)  # a loss line looks like an event line
        time.sleep(0.3)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    mine = [e for e in events if e.get("pid") == child.pid]
    assert [e["kind"] for e in mine] == ["created", "exec", "exited"]
    assert mine[1]["command_line"] == ["sh", "-c", "sleep 0.1; exit 7"]
    assert mine[2]["exit_code"] == 7 and mine[2]["ppid"] == os.getpid()
    assert {"kind": "lost", "count": 3} in events
