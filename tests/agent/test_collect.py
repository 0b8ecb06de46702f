"""`procobsrv collect`: a durable JetStream consumer that filters and resumes."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from procobsrv.agent.collect import LineFile, WriteFailed
from tests.fakes.nats import NatsServer, collect, publish, records, single, stop_watch
from tests.fakes.planted import OTHER_UID, planted_link
from tests.fakes.watch import validate_lines, watching


@pytest.mark.kernel
def test_collect_filters_and_resumes_where_it_stopped(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    out = tmp_path / "collected.jsonl"
    collect = [
        sys.executable,
        "-m",
        "procobsrv",
        "collect",
        nats_server.url,
        "--durable",
        "t",
        "--match",
        "true [a-z]+-batch-marker$",  # not collect's own command line, should a watch see it
        "--kind",
        "exec",
        "--output",
        str(out),
        "--duration",
        "4",  # under load, connecting takes a good part of it
    ]
    for tag in ("first-batch-marker", "second-batch-marker"):
        with watching("--output", nats_server.url) as watch:
            for _ in range(2):  # alive long enough for its argv to be read at exec
                subprocess.run(["sh", "-c", "sleep 0.5; true", tag], check=True)
            stop_watch(watch)
        done = subprocess.run(collect, timeout=60, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    records = validate_lines(lines)
    tags = [" ".join(r["command_line"]) for r in records]
    assert all(r["kind"] == "exec" for r in records)
    first = [t for t in tags if "first-batch-marker" in t]
    second = [t for t in tags if "second-batch-marker" in t]
    seen = [(r["id"], r["command_line"]) for r in records]
    assert len(first) == len(second) == 2, seen  # not read twice: the consumer resumed
    assert tags.index(second[0]) > tags.index(first[-1])


def fill(directory: Path) -> int:
    """Fills the filesystem of ``directory`` but for ``room`` bytes; returns the free bytes."""
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    (directory / "filler").write_bytes(b"x" * (free - ROOM))
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


#: Bytes left free on the full filesystem: a handful of lines.
ROOM = 8192


def collected_ids(*files: Path) -> list[str]:
    return [json.loads(line)["id"] for f in files for line in f.read_text().splitlines()]


def test_collect_on_a_full_filesystem_acks_only_what_it_wrote(
    nats_servers: list[NatsServer], small_filesystem: Path, tmp_path: Path
) -> None:
    """ENOSPC stops collect with status 1 and the count of lines written; nothing unwritten
    was acknowledged, so a second run (with room) gets every other record: none is lost,
    none repeated, none cut."""
    server = single(nats_servers, tmp_path)
    sent = records(300)
    publish([server.url], sent)
    fill(small_filesystem)
    full = small_filesystem / "collected.jsonl"
    done = collect(server.url, "--durable", "t", "--output", str(full), "--duration", "10")
    assert done.returncode == 1, done.stderr
    assert "No space left on device" in done.stderr and "Traceback" not in done.stderr
    written = int(re.search(r"(\d+) lines collected", done.stderr).group(1))  # type: ignore[union-attr]
    first = collected_ids(full)
    assert 0 < written == len(first) < len(sent)  # whole lines only
    rest = tmp_path / "rest.jsonl"
    again = collect(server.url, "--durable", "t", "--output", str(rest), "--duration", "3")
    assert again.returncode == 0, again.stderr
    expected = [json.loads(p)["id"] for p in sent]
    assert first == expected[:written]
    assert sorted(first + collected_ids(rest)) == sorted(expected)


def test_a_malformed_message_is_counted_set_aside_and_passed(
    nats_servers: list[NatsServer], tmp_path: Path
) -> None:
    """Non-JSON, non-object and non-UTF-8 messages among good ones: collect writes every good
    line, names each bad message's stream sequence, writes the bad ones to the dead-letter
    file, and the next run does not see them again."""
    server = single(nats_servers, tmp_path)
    good = records(4)
    bad = [b"not json {", b"[1, 2]", b"\xff\xfe"]
    publish([server.url], [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3]])
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    args = ["--durable", "t", "--output", str(out), "--dead-letter", str(dead), "--duration", "2"]
    done = collect(server.url, *args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "4 lines collected, 3 malformed messages" in done.stderr
    assert "stream sequence 2" in done.stderr  # the first bad one, at WARNING
    assert collected_ids(out) == [json.loads(p)["id"] for p in good]
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(d["stream_sequence"], base64.b64decode(d["data"])) for d in letters] == [
        (2, bad[0]),
        (4, bad[1]),
        (6, bad[2]),
    ]
    again = collect(server.url, "--durable", "t", "--output", str(out), "--duration", "2")
    assert again.returncode == 0 and "0 lines collected" in again.stderr, again.stderr


def event_id(line: str) -> str:
    """The procobsrv event id a line carries, in any ``--format``."""
    doc = json.loads(line)
    if "resourceLogs" in doc:  # otel
        log = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
        attributes = {a["key"]: a["value"] for a in log["attributes"]}
        return str(attributes["procobsrv.event.id"]["stringValue"])
    return str(doc["event"]["id"] if "ecs" in doc else doc["id"])


@pytest.mark.parametrize("line_format", ["json", "ecs", "otel"])
def test_a_foreign_json_object_is_set_aside_in_every_format(
    nats_servers: list[NatsServer], tmp_path: Path, line_format: str
) -> None:
    """JSON objects that are not procobsrv records (``{}``, a bare kind) are counted,
    dead-lettered and terminated like non-JSON: collect neither stops on them nor writes them
    out as events. A record whose fields have the wrong type cannot be mapped to ECS or OTel:
    set aside too (``json`` copies it, as it has every field of an event)."""
    server = single(nats_servers, tmp_path)
    good = records(4)
    mistyped = json.loads(good[3])
    mistyped["timestamp"] = "soon"
    foreign = [b"{}", b'{"kind":"exec"}', b'{"kind":[]}', json.dumps(mistyped).encode()]
    publish([server.url], [good[0], foreign[0], good[1], *foreign[1:], good[2]])
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    args = ["--durable", "t", "--format", line_format, "--output", str(out), "--duration", "2"]
    done = collect(server.url, *args, "--dead-letter", str(dead))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    copied = line_format == "json"
    set_aside = foreign[:3] if copied else foreign
    written = [good[0], good[1], good[3], good[2]] if copied else good[:3]
    summary = f"{len(written)} lines collected, {len(set_aside)} malformed messages"
    assert summary in done.stderr, done.stderr
    ids = [event_id(line) for line in out.read_text().splitlines()]
    assert ids == [json.loads(p)["id"] for p in written]
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(d["stream_sequence"], base64.b64decode(d["data"])) for d in letters] == list(
        zip((2, 4, 5, 6), set_aside, strict=False)
    )
    again = collect(server.url, *args)
    assert again.returncode == 0 and "0 lines collected" in again.stderr, again.stderr


def schema_1(payload: bytes) -> bytes:
    """The line an older watch wrote for the same event: version 1 had no path flags."""
    record = json.loads(payload)
    for flag in ("image_truncated", "cwd_truncated", "image_outside_root"):
        del record[flag]
    return json.dumps(record | {"schema_version": 1}).encode()


@pytest.mark.parametrize("line_format", ["json", "ecs", "otel"])
def test_collect_takes_records_of_schema_version_1(
    nats_servers: list[NatsServer], tmp_path: Path, line_format: str
) -> None:
    """A stream that holds what an older watch published beside version 2 records: every
    one is collected, in every format, none set aside."""
    server = single(nats_servers, tmp_path)
    made = records(4)
    new, old = made[:2], [schema_1(p) for p in made[2:]]
    sent = [old[0], new[0], old[1], new[1]]
    publish([server.url], sent)
    out = tmp_path / "out.jsonl"
    args = ["--durable", "t", "--format", line_format, "--output", str(out), "--duration", "2"]
    done = collect(server.url, *args)
    assert done.returncode == 0, done.stderr
    assert "4 lines collected" in done.stderr and "malformed" not in done.stderr, done.stderr
    lines = out.read_text().splitlines()
    assert [event_id(line) for line in lines] == [json.loads(p)["id"] for p in sent]
    if line_format == "json":
        assert [json.loads(line)["schema_version"] for line in lines] == [1, 2, 1, 2]


def test_collect_to_a_closed_stdout_is_one_line_and_status_2() -> None:
    """Started with fd 1 closed (``collect >&-``) and no --output: said before connecting."""
    run = subprocess.run(
        [sys.executable, "-m", "procobsrv", "collect", "nats://127.0.0.1:1", "--duration", "5"],
        stderr=subprocess.PIPE,
        text=True,
        timeout=30,
        preexec_fn=lambda: os.close(1),
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "standard output is closed" in run.stderr


def collected_ids_of(payloads: list[bytes]) -> list[str]:
    return [json.loads(p)["id"] for p in payloads]


@pytest.mark.parametrize("option", ["--output", "--dead-letter"])
def test_collect_does_not_follow_a_symlink_another_user_planted(
    nats_servers: list[NatsServer], tmp_path: Path, option: str
) -> None:
    """``--output``/``--dead-letter`` naming a link another user planted (in a directory of
    theirs, to make collect append to a file of the caller's): refused with one line and
    status 2, the link's target untouched, nothing acknowledged."""
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    planted = planted_link(tmp_path, victim)
    server = single(nats_servers, tmp_path)
    sent = records(3)
    publish([server.url], [sent[0], b"{}", *sent[1:]])
    files = {"--output": tmp_path / "out.jsonl", "--dead-letter": tmp_path / "dead.jsonl"}
    files[option] = planted
    paths = [str(p) for pair in files.items() for p in pair]
    done = collect(server.url, "--durable", "t", *paths, "--duration", "2")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "symbolic link" in done.stderr and str(OTHER_UID) in done.stderr, done.stderr
    assert victim.read_text() == "mine\n"
    out = tmp_path / "after.jsonl"
    again = collect(server.url, "--durable", "t", "--output", str(out), "--duration", "2")
    assert again.returncode == 0 and collected_ids(out) == collected_ids_of(sent), again.stderr


def test_collect_ends_a_cut_last_line_before_appending(
    nats_servers: list[NatsServer], tmp_path: Path
) -> None:
    """An output file whose last line was cut (a crash of another writer, a full disk) gets a
    newline first: the cut line is never glued to the first collected one."""
    server = single(nats_servers, tmp_path)
    sent = records(2)
    publish([server.url], sent)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"whole":1}\n{"cut":')
    done = collect(server.url, "--durable", "t", "--output", str(out), "--duration", "2")
    assert done.returncode == 0, done.stderr
    first, cut, *rest = out.read_bytes().splitlines()
    assert (first, cut) == (b'{"whole":1}', b'{"cut":')
    assert [json.loads(line)["id"] for line in rest] == collected_ids_of(sent)


def test_a_failed_write_whose_cut_cannot_be_taken_back_is_still_a_write_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When even truncating the failed write away fails (an I/O error), collect still ends
    as a failed write that kept nothing (its lines come again next run), not a traceback."""
    out = LineFile(str(tmp_path / "out.jsonl"))

    def failing(*_: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    monkeypatch.setattr(os, "ftruncate", failing)
    with pytest.raises(WriteFailed) as failed:
        out.write(['{"a":1}', '{"b":2}'])
    out.close()
    assert failed.value.written == 0 and failed.value.error.errno == 5
