"""What trace shows, from a made-up tree: the text tree's drawing, the Chrome trace-event
file's shape, and an HTML page that an argument cannot break out of."""

from __future__ import annotations

import json
import re

from procobsrv.cli.timeline import Trace, chrome_trace, html_page, rows, tree_text
from procobsrv.descendants import Spawned

MS = 1_000_000


def spawned(
    pid: int, parent: Spawned | None, start: int, end: int | None, *argv: str, **kw: object
) -> Spawned:
    return Spawned(
        pid=pid,
        ppid=parent.pid if parent else 1,
        parent=parent.key if parent else None,
        start_ns=start * MS,
        start_time=0.0,
        argv=argv,
        execs=1,
        exit_ns=None if end is None else end * MS,
        **kw,  # type: ignore[arg-type]
    )


ROOT = spawned(10, None, 100, 300, "make", "-j2", exit_code=0)
A = spawned(11, ROOT, 110, 200, "cc", "-c", "a.c", exit_code=1)
A1 = spawned(12, A, 120, 190, "cc1", "a.c", signal=9)
B = spawned(13, ROOT, 150, None, "sleep", "</script><script>alert(1)</script>")
TRACE = Trace(("make", "-j2"), (ROOT, A, A1, B), origin=100 * MS, end=400 * MS, status=2)


def test_rows_depth_first_with_the_tree_drawn() -> None:
    drawn = rows(TRACE)
    assert [(r.process.pid, r.depth, r.prefix) for r in drawn] == [
        (10, 0, ""),
        (11, 1, "├─ "),
        (12, 2, "│  └─ "),
        (13, 1, "└─ "),
    ]


def test_tree_text_columns() -> None:
    lines = tree_text(TRACE).splitlines()
    assert lines[0] == "procobsrv: trace of make -j2: exit status 2, 0.300 s, 4 processes"
    assert lines[2].split() == ["+0.000s", "0.200s", "0", "10", "make", "-j2"]
    assert lines[3].split()[:5] == ["+0.010s", "0.090s", "1", "11", "├─"]
    assert "SIGKILL" in lines[4]
    assert lines[5].split()[:3] == ["+0.050s", "0.250s", "running"]  # drawn up to the end


def test_chrome_trace_one_complete_event_per_process_on_its_own_track() -> None:
    data = chrome_trace(TRACE)
    json.dumps(data)  # JSON-ready
    events = data["traceEvents"]
    assert isinstance(events, list)
    complete = [e for e in events if e["ph"] == "X"]
    assert [(e["tid"], e["ts"], e["dur"]) for e in complete] == [
        (1, 0.0, 200_000.0),
        (2, 10_000.0, 90_000.0),
        (3, 20_000.0, 70_000.0),
        (4, 50_000.0, 250_000.0),
    ]
    assert {e["pid"] for e in events} == {10}
    assert complete[1]["args"]["argv"] == ["cc", "-c", "a.c"]
    assert complete[1]["args"]["exit_code"] == 1 and complete[2]["args"]["status"] == "SIGKILL"
    names = [e["args"]["name"] for e in events if e["name"] == "thread_name"]
    assert names == ["make [10]", "  cc [11]", "    cc1 [12]", "  sleep [13]"]


def test_html_is_self_contained_and_an_argument_cannot_close_the_script() -> None:
    page = html_page(TRACE)
    assert page.count("<script>") == 1 and page.count("</script>") == 1
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    data = page.split("const TRACE = ", 1)[1].split(";\n", 1)[0]
    decoded = json.loads(data)
    assert decoded["rows"][3]["argv"][1] == "</script><script>alert(1)</script>"
    assert decoded["status"] == 2 and [r["depth"] for r in decoded["rows"]] == [0, 1, 2, 1]
