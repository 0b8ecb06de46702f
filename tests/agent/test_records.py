"""agent/records.py: every line of real runs validates against the schema it ships
(`procobsrv schema`); ids are stable per event."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from procobsrv import EventKind, QueuedItem
from procobsrv.agent import RecordMaker, schema_text
from procobsrv.agent.records import read_boot_id
from tests.fakes.watch import ROOT, run_markers, schema, validate_lines, watching


def test_schema_is_draft_2020_12_and_shipped() -> None:
    s = schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert json.loads(schema_text()) == s
    assert s["$defs"]["envelope"]["properties"]["schema_version"]["const"] == 1


def test_docs_list_every_field() -> None:
    page = (ROOT / "docs" / "agent.md").read_text()
    defs = schema()["$defs"]
    fields = {f for d in defs.values() for f in d["properties"]}
    for field in fields:
        assert re.search(rf"^\| `{field}` \|", page, re.MULTILINE), f"docs/agent.md lacks {field}"


def test_every_queued_item_field_is_in_the_schema() -> None:
    """as_dict's keys, plus the new fields of FIELDS.md even before as_dict has them."""
    item = QueuedItem(EventKind.EXEC, 1, 0, 1.0, monotonic_ns=5)
    defs = schema()["$defs"]
    props = set(defs["envelope"]["properties"]) | set(defs["process_event"]["properties"])
    assert set(item.as_dict()) <= props
    assert set(RecordMaker().event(item)) == props


def test_loss_records_validate_and_never_repeat_an_id() -> None:
    a, b = RecordMaker(), RecordMaker()  # two collectors, or one restarted
    records = [a.lost(3), a.lost(1, "output"), b.lost(3)]
    validate_lines([json.dumps(r) for r in records])
    assert len({r["id"] for r in records}) == 3


def test_the_same_event_gets_the_same_id_from_two_collectors() -> None:
    item = QueuedItem(EventKind.EXEC, 42, 1, 1.5, monotonic_ns=123_456)
    assert RecordMaker().event(item)["id"] == RecordMaker().event(item)["id"]
    other = QueuedItem(EventKind.EXITED, 42, 1, 1.5, monotonic_ns=123_456)
    assert RecordMaker().event(item)["id"] != RecordMaker().event(other)["id"]
    assert RecordMaker().event(item)["boot_id"] == read_boot_id()


@pytest.mark.kernel
@pytest.mark.usefixtures("connector")
def test_every_line_of_real_watch_json_runs_validates() -> None:
    """Two watches at once see the same children: all lines valid, ids unique within each
    run, and (the connector stamps each event once for every listener) the same event
    carries the same id in both."""
    with (
        watching("--json", "--source", "connector") as one,
        watching("--json", "--source", "connector") as two,
    ):
        pids = run_markers("schema-marker")
        one.send_signal(signal.SIGINT)
        two.send_signal(signal.SIGINT)
        outs = [p.communicate(timeout=20)[0] for p in (one, two)]
    runs = [validate_lines(out.splitlines()) for out in outs]
    for records in runs:
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids)), "an id repeated within one run"
        mine = [r for r in records if r.get("pid") in pids]
        assert {r["kind"] for r in mine} == {"created", "exec", "exited"}, mine
        assert any(r["signal"] == signal.SIGKILL for r in mine)
        assert any(r["exit_code"] == 3 for r in mine)
    ids_of = [{r["id"] for r in records if r.get("pid") in pids} for records in runs]
    assert ids_of[0] == ids_of[1]


def test_watch_json_of_the_old_format_is_gone(tmp_path: Path) -> None:
    """`--json` lines are records: the plain `as_dict` line had no schema_version."""
    import threading

    from procobsrv.cli.output import Output
    from procobsrv.cli.watch import ConsoleHandler

    out = tmp_path / "out"
    with out.open("w") as stream:
        output = Output(stream, on_broken=lambda: None)
        output.start()
        handler = ConsoleHandler(output, threading.Event(), json_lines=True)
        handler.on_process_event(QueuedItem(EventKind.CREATED, 7, 1, 2.0, monotonic_ns=9), None)
        handler.on_events_lost(2, None)
        output.close(5.0)
    records = validate_lines(out.read_text().splitlines())
    assert [r["kind"] for r in records] == ["created", "lost"]
