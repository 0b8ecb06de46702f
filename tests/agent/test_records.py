"""agent/records.py: every line of real runs validates against the schema it ships
(`procobsrv schema`); ids are stable per event."""

from __future__ import annotations

import json
import os
import random
import re
import signal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from procobsrv import EventKind, QueuedItem
from procobsrv.agent import RecordMaker, original_bytes, schema_text
from procobsrv.agent.records import dumps, is_record, read_boot_id, wall_time
from procobsrv.containers import PATTERNS
from tests.fakes.fuzzing import FUZZ
from tests.fakes.watch import ROOT, run_markers, schema, validate_lines, watching


def test_schema_is_draft_2020_12_and_shipped() -> None:
    s = schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert json.loads(schema_text()) == s
    assert s["$defs"]["envelope"]["properties"]["schema_version"]["const"] == 2


def test_the_schema_lists_every_container_runtime() -> None:
    runtimes = schema()["$defs"]["process_event"]["properties"]["container_runtime"]["enum"]
    assert set(runtimes) == {p.runtime for p in PATTERNS} | {None}


def test_docs_list_every_field() -> None:
    page = (ROOT / "docs" / "reference" / "json.md").read_text()
    defs = schema()["$defs"]
    fields = {f for d in defs.values() for f in d["properties"]}
    for field in fields:
        assert re.search(rf"^\| `{field}` \|", page, re.MULTILINE), (
            f"docs/reference/json.md lacks {field}"
        )


def test_every_queued_item_field_is_in_the_schema() -> None:
    """as_dict's keys, plus the new fields of FIELDS.md even before as_dict has them."""
    item = QueuedItem(EventKind.EXEC, 1, 0, 1.0, monotonic_ns=5)
    defs = schema()["$defs"]
    props = set(defs["envelope"]["properties"]) | set(defs["process_event"]["properties"])
    assert set(item.as_dict()) <= props
    assert set(RecordMaker().event(item)) == props


def test_a_record_is_told_from_other_json_values_by_its_kind_and_fields() -> None:
    """What collect takes for a record: an event or a loss, also of another schema version
    (a field more or less than this one's); not an object of another kind or shape."""
    maker = RecordMaker()
    event = maker.event(QueuedItem(EventKind.EXEC, 7, 1, 1.0, command_line=["x"]))
    assert is_record(event) and is_record(maker.lost(3))
    assert is_record({k: v for k, v in event.items() if k != "cgroup"} | {"new_field": 1})
    for other in ({}, {"kind": "exec"}, {**event, "kind": ["exec"]}, {**event, "kind": "ran"}):
        assert not is_record(other), other
    assert not is_record({k: v for k, v in event.items() if k != "pid"})
    assert not is_record([event])


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


# -- the fast line: exactly dumps(event(item)) ---------------------------------------------
_texts = st.one_of(
    st.none(), st.text(), st.sampled_from(["/usr/bin/x", "\udcff\udc80", "é\u2028\U0001f600"])
)
_ints = st.one_of(st.none(), st.integers(-(2**63), 2**64))
_items = st.builds(
    QueuedItem,
    kind=st.sampled_from(list(EventKind)),
    process_id=st.integers(0, 2**32),
    parent_id=st.integers(0, 2**32),
    timestamp=st.one_of(
        st.floats(0, 4e9),
        st.integers(0, 4_000_000_000).map(lambda s: s + 0.5e-6),  # ties at the microsecond
        st.integers(0, 4_000_000_000).map(lambda s: s + 0.9999996),  # carries a second
        st.floats(-1e6, 0),
    ),
    monotonic_ns=st.integers(0, 2**64),
    image=_texts,
    command_line=st.one_of(st.none(), st.lists(st.text(), max_size=6)),
    exit_code=_ints,
    signal=_ints,
    core_dumped=st.booleans(),
    uid=_ints,
    start_ns=st.integers(0, 2**64),
    euid=_ints,
    comm=_texts,
    cwd=_texts,
    script=_texts,
    command_line_truncated=st.booleans(),
    command_line_size=_ints,
    cgroup_id=_ints,
    cgroup=st.one_of(
        _texts,
        st.sampled_from([p.sample for p in PATTERNS]),
        # a container id (here a machine's name) that JSON must escape
        st.text().map(lambda name: f"/machine.slice/machine-{name}.scope"),
    ),
    image_truncated=st.booleans(),
    cwd_truncated=st.booleans(),
    image_outside_root=st.booleans(),
    ns_pid=_ints,
    ns_ppid=_ints,
    pid_ns=_ints,
    mnt_ns=_ints,
)


@FUZZ
@given(items=st.lists(_items, min_size=1, max_size=5), host=st.text(), boot_id=st.text())
def test_the_fast_event_line_is_dumps_of_the_record(
    items: list[QueuedItem], host: str, boot_id: str
) -> None:
    """``event_line`` (what watch --json and --output write) against the json module, over
    every field, odd strings, ids with and without a kernel timestamp, and the wall clock's
    rounding (ties, a carry into the next second, times before 1970)."""
    maker = RecordMaker(host, boot_id)
    for item in items:
        line = maker.event_line(item)
        record = maker.event(item)
        if not item.monotonic_ns:  # a local id: the maker's counter has moved on by one
            record["id"] = json.loads(line)["id"]
        assert line == dumps(record)


def test_wall_time_shortcut_agrees_with_datetime_over_a_day_of_microseconds() -> None:
    maker = RecordMaker("h", "b")
    rng = random.Random(5)
    for _ in range(20_000):
        seconds = rng.uniform(1.7e9, 1.7e9 + 86_400)
        item = QueuedItem(EventKind.EXEC, 1, 0, seconds, monotonic_ns=1)
        assert json.loads(maker.event_line(item))["time"] == wall_time(seconds)


def test_original_bytes_gives_back_what_fsdecode_took() -> None:
    raw = b"\xff\xfe-\xc3\xa9-\xed\xa0\x80-ok"
    text = os.fsdecode(raw)
    assert json.loads(json.dumps(text)) == text
    assert original_bytes(json.loads(json.dumps(text))) == raw
