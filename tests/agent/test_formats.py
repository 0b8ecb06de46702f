"""ECS and OpenTelemetry lines: every field name checked against the published references,
the two traps (real vs effective uid, creation time from start_ns), and the real tool."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from procobsrv.agent.formats import ECS_VERSION, creation_time, to_ecs, to_otel
from procobsrv.agent.records import RecordMaker
from procobsrv.events import EventKind, QueuedItem
from procobsrv.linux.ebpf_abi import PO_MAX_DEPTH
from tests.fakes.nats import NatsServer, stop_watch
from tests.fakes.watch import validate_lines, watching

#: Field names of the Elastic Common Schema 8.x field reference (Base: @timestamp; ECS;
#: Event; Host, incl. host.boot.id; Process, with process.parent.* and the user fields reused
#: as process.user.* and process.real_user.*): https://www.elastic.co/guide/en/ecs/8.11/
ECS_FIELDS = {
    "@timestamp": "date",
    "ecs.version": "keyword",
    "message": "match_only_text",
    "event.kind": "keyword",
    "event.category": "keyword",
    "event.type": "keyword",
    "event.action": "keyword",
    "event.id": "keyword",
    "host.name": "keyword",
    "host.boot.id": "keyword",
    "process.pid": "long",
    "process.entity_id": "keyword",
    "process.parent.pid": "long",
    "process.executable": "keyword",
    "process.name": "keyword",
    "process.args": "keyword",
    "process.args_count": "long",
    "process.command_line": "wildcard",
    "process.working_directory": "keyword",
    "process.start": "date",
    "process.end": "date",
    "process.exit_code": "long",
    "process.user.id": "keyword",
    "process.real_user.id": "keyword",
    # process.vpid since ECS 8.9 (elastic/ecs pull request 2211, "Introduce process.vpid");
    # process.parent reuses the process field set, so process.parent.vpid comes with it
    "process.vpid": "long",
    "process.parent.vpid": "long",
    # Container fields: https://www.elastic.co/guide/en/ecs/8.11/ecs-container.html
    "container.id": "keyword",
    "container.runtime": "keyword",
}
#: ECS's allowed values (ECS Categorization Fields, 8.x) for the ones procobsrv sets.
ECS_ALLOWED = {
    "event.kind": {"event"},
    "event.category": {"process"},
    "event.type": {"start", "end", "info"},
}
#: OpenTelemetry semantic conventions, process attributes registry
#: (https://opentelemetry.io/docs/specs/semconv/registry/attributes/process/), host.name
#: (host attributes) and service.name (service attributes), with their value types.
OTEL_ATTRIBUTES = {
    "process.pid": "int",
    "process.parent_pid": "int",
    "process.executable.path": "string",
    "process.executable.name": "string",
    "process.command": "string",
    "process.command_args": "string[]",
    "process.args_count": "int",
    "process.working_directory": "string",
    "process.creation.time": "string",
    "process.exit.code": "int",
    "process.exit.time": "string",
    "process.real_user.id": "int",
    "process.user.id": "int",
    "process.linux.cgroup": "string",
    "process.vpid": "int",
    # container attributes (container.runtime is deprecated for container.runtime.name):
    # https://opentelemetry.io/docs/specs/semconv/registry/attributes/container/
    "container.id": "string",
    "container.runtime.name": "string",
    # https://opentelemetry.io/docs/specs/semconv/registry/attributes/k8s/
    "k8s.pod.uid": "string",
    "host.name": "string",
    "service.name": "string",
}
OTLP_TYPE = {"int": "intValue", "string": "stringValue", "string[]": "arrayValue"}

BOOT_WALL = 1_800_000_000.0  # the boot, as wall-clock seconds
START_NS = 5_000_000_000  # created 5 s after the boot
EVENT_NS = 65_000_000_000  # the exit came a minute later


def exited_item(**changes: Any) -> QueuedItem:
    fields: dict[str, Any] = {
        "kind": EventKind.EXITED,
        "process_id": 4242,
        "parent_id": 1,
        "timestamp": BOOT_WALL + EVENT_NS / 1e9,
        "monotonic_ns": EVENT_NS,
        "image": "/usr/bin/sudo",
        "command_line": ["sudo", "-u", "nobody", "id"],
        "exit_code": 3,
        "uid": 1000,  # real: the user who ran sudo
        "euid": 0,  # effective: root
        "start_ns": START_NS,
        "cwd": "/home/me",
        "cgroup": "/user.slice",
        "comm": "sudo",
    }
    fields.update(changes)
    return QueuedItem(**fields)


def record(**changes: Any) -> dict[str, Any]:
    maker = RecordMaker(host="box", boot_id="2b1e0d2c-0000-4000-8000-000000000001")
    return maker.event(exited_item(**changes))


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def otel_attributes(line: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(resource attributes, the log record, its attributes), each attribute as its AnyValue."""
    (resource_logs,) = line["resourceLogs"]
    (scope_logs,) = resource_logs["scopeLogs"]
    (log,) = scope_logs["logRecords"]
    resource = {a["key"]: a["value"] for a in resource_logs["resource"]["attributes"]}
    return resource, log, {a["key"]: a["value"] for a in log["attributes"]}


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


POD = "6b0e2f3a-1c4d-4e5f-8a9b-0c1d2e3f4a5b"
CONTAINER_ID = "4c5e1f6a2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7"
#: A process in a Kubernetes pod's container (containerd), seen through its namespaces.
IN_A_POD = {
    "cgroup": f"/kubepods/besteffort/pod{POD}/{CONTAINER_ID}",
    "ns_pid": 7,
    "ns_ppid": 1,
    "pid_ns": 4026532201,
    "mnt_ns": 4026532202,
}


# -- ECS ------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", [{}, IN_A_POD])
@pytest.mark.parametrize("kind", list(EventKind))
def test_ecs_field_names_are_the_published_ones(kind: EventKind, where: dict[str, Any]) -> None:
    flat = flatten(to_ecs(record(kind=kind, **where)))
    ours = {name for name in flat if not name.startswith("procobsrv.")}
    assert ours <= set(ECS_FIELDS), ours - set(ECS_FIELDS)
    for name, allowed in ECS_ALLOWED.items():
        values = flat[name] if isinstance(flat[name], list) else [flat[name]]
        assert set(values) <= allowed, (name, values)
    assert flat["ecs.version"] == ECS_VERSION and ECS_VERSION.startswith("8.")


def test_ecs_values_and_the_two_traps() -> None:
    doc = flatten(to_ecs(record()))
    assert doc["process.real_user.id"] == "1000"  # uid is the real uid
    assert doc["process.user.id"] == "0"  # euid is the effective one
    assert doc["process.start"] == iso(BOOT_WALL + 5)  # start_ns + boot, not the event time
    assert doc["process.end"] == doc["@timestamp"] == iso(BOOT_WALL + 65)
    assert doc["process.exit_code"] == 3
    assert doc["process.args"] == ["sudo", "-u", "nobody", "id"] and doc["process.args_count"] == 4
    assert doc["process.command_line"] == "sudo -u nobody id"
    assert doc["process.executable"] == "/usr/bin/sudo" and doc["process.name"] == "sudo"
    assert doc["process.parent.pid"] == 1 and doc["process.pid"] == 4242
    assert doc["event.type"] == ["end"] and doc["event.action"] == "exit"
    assert doc["host.name"] == "box" and doc["host.boot.id"].startswith("2b1e0d2c")


def test_ecs_namespaces_and_container() -> None:
    doc = flatten(to_ecs(record(**IN_A_POD)))
    assert doc["process.pid"] == 4242 and doc["process.vpid"] == 7
    assert doc["process.parent.pid"] == 1 and doc["process.parent.vpid"] == 1
    assert doc["container.id"] == CONTAINER_ID and doc["container.runtime"] == "cri"
    assert doc["procobsrv.pod_uid"] == POD
    assert (doc["procobsrv.pid_ns"], doc["procobsrv.mnt_ns"]) == (4026532201, 4026532202)
    outside = flatten(to_ecs(record()))
    assert not {n for n in outside if n.startswith("container.") or "vpid" in n}


def test_ecs_leaves_out_what_is_unknown() -> None:
    doc = flatten(to_ecs(record(kind=EventKind.EXEC, start_ns=0, uid=None, exit_code=None)))
    for absent in ("process.start", "process.real_user.id", "process.exit_code", "process.end"):
        assert absent not in doc
    assert doc["event.type"] == ["start"] and doc["event.action"] == "exec"


def test_a_killed_process_has_no_exit_code_and_says_its_signal() -> None:
    doc = flatten(to_ecs(record(exit_code=None, signal=9)))
    assert "process.exit_code" not in doc and doc["procobsrv.signal"] == 9
    _, _, attributes = otel_attributes(to_otel(record(exit_code=None, signal=9)))
    assert "process.exit.code" not in attributes
    assert attributes["procobsrv.signal"] == {"intValue": "9"}


def test_loss_records_in_both_formats() -> None:
    lost = RecordMaker(host="box").lost(7)
    doc = flatten(to_ecs(lost))
    assert doc["event.action"] == "lost" and doc["procobsrv.lost.count"] == 7
    assert {n for n in doc if not n.startswith("procobsrv.")} <= set(ECS_FIELDS)
    _, log, attributes = otel_attributes(to_otel(lost))
    assert log["severityText"] == "WARN" and attributes["procobsrv.lost.count"]["intValue"] == "7"


# -- OpenTelemetry --------------------------------------------------------------------------
@pytest.mark.parametrize("where", [{}, IN_A_POD])
@pytest.mark.parametrize("kind", list(EventKind))
def test_otel_attribute_names_and_value_types_are_the_published_ones(
    kind: EventKind, where: dict[str, Any]
) -> None:
    resource, log, attributes = otel_attributes(to_otel(record(kind=kind, **where)))
    for name, value in {**resource, **attributes}.items():
        if name.startswith("procobsrv."):
            continue
        assert name in OTEL_ATTRIBUTES, name
        assert list(value) == [OTLP_TYPE[OTEL_ATTRIBUTES[name]]], (name, value)
    assert int(log["timeUnixNano"]) == pytest.approx((BOOT_WALL + 65) * 1e9, abs=1000)
    assert log["eventName"] == f"procobsrv.process.{kind.value}"


def test_otel_values_and_the_two_traps() -> None:
    _, log, attributes = otel_attributes(to_otel(record()))
    assert attributes["process.real_user.id"] == {"intValue": "1000"}
    assert attributes["process.user.id"] == {"intValue": "0"}
    assert attributes["process.creation.time"] == {"stringValue": iso(BOOT_WALL + 5)}
    assert attributes["process.exit.code"] == {"intValue": "3"}
    assert attributes["process.parent_pid"] == {"intValue": "1"}
    argv = attributes["process.command_args"]["arrayValue"]["values"]
    assert [v["stringValue"] for v in argv] == ["sudo", "-u", "nobody", "id"]
    assert attributes["process.linux.cgroup"] == {"stringValue": "0::/user.slice"}
    assert log["body"]["stringValue"] == "exited 4242 sudo -u nobody id"


def test_otel_namespaces_and_container() -> None:
    _, _, attributes = otel_attributes(to_otel(record(**IN_A_POD)))
    assert attributes["process.vpid"] == {"intValue": "7"}
    assert attributes["procobsrv.ns_ppid"] == {"intValue": "1"}
    assert attributes["container.id"] == {"stringValue": CONTAINER_ID}
    assert attributes["container.runtime.name"] == {"stringValue": "cri"}
    assert attributes["k8s.pod.uid"] == {"stringValue": POD}
    assert attributes["procobsrv.pid_ns"] == {"intValue": "4026532201"}


@pytest.mark.parametrize("lost", [False, True])
def test_otel_observed_time_is_when_procobsrv_rendered_the_record(lost: bool) -> None:
    """``timeUnixNano`` is the event's time; ``observedTimeUnixNano`` is when procobsrv (the
    collector, in the log data model's terms) observed the record: the mapping's own clock."""
    line = RecordMaker().lost(1) if lost else record()
    line["timestamp"] = 1_000_000_000.0  # 2001: long before the test runs
    before = time.time_ns()
    _, log, _ = otel_attributes(to_otel(line))
    after = time.time_ns()
    assert log["timeUnixNano"] == str(1_000_000_000 * 10**9)
    assert before <= int(log["observedTimeUnixNano"]) <= after


FLAGS = ("image_truncated", "cwd_truncated", "image_outside_root")


def test_the_path_flags_that_are_set_are_in_both_formats() -> None:
    """Schema 2's flags: under procobsrv.* (ECS) and as procobsrv.* attributes (OTel) when
    set, left out when not, like the other flags."""
    marked = record(image_truncated=True, cwd_truncated=True, image_outside_root=True)
    ecs = flatten(to_ecs(marked))
    otel = otel_attributes(to_otel(marked))[2]
    for flag in FLAGS:
        assert ecs[f"procobsrv.{flag}"] is True
        assert otel[f"procobsrv.{flag}"] == {"boolValue": True}
    named = {f"procobsrv.{f}" for f in FLAGS}
    assert not named & set(flatten(to_ecs(record())))
    assert not named & set(otel_attributes(to_otel(record()))[2])


def test_a_schema_1_record_maps_without_the_flags() -> None:
    """What an older watch wrote (collect reads streams that hold it)."""
    old = {k: v for k, v in record().items() if k not in FLAGS} | {"schema_version": 1}
    ecs = flatten(to_ecs(old))
    assert ecs["process.pid"] == 4242 and not {f"procobsrv.{f}" for f in FLAGS} & set(ecs)
    assert otel_attributes(to_otel(old))[2]["process.pid"] == {"intValue": "4242"}


def test_creation_time_of_an_exec_is_not_the_event_time() -> None:
    """The trap the issue names: an exec a minute after the fork says the fork's time."""
    exec_record = record(kind=EventKind.EXEC)
    assert creation_time(exec_record) == iso(BOOT_WALL + 5)
    assert exec_record["time"] != creation_time(exec_record)


# -- the console tool -----------------------------------------------------------------------
TOOL = [sys.executable, "-m", "procobsrv"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["watch", "--format", "ecs", "--json"], "--json"),
        (["watch", "--format", "text", "--output", "x.jsonl"], "--output"),
        (["watch", "--format", "otel", "--output", "nats://127.0.0.1:1"], "collect"),
        (["watch", "--format", "xml"], "--format"),
        (["collect", "nats://127.0.0.1:1", "--format", "text"], "--format"),
    ],
)
def test_contradicting_formats_are_refused_in_one_line(
    args: list[str], said: str, tmp_path: Path
) -> None:
    run = subprocess.run([*TOOL, *args], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert run.returncode == 2, run
    assert run.stderr.count("\n") == 1 and said in run.stderr, run.stderr
    assert not (tmp_path / "x.jsonl").exists()


def stop(watch: subprocess.Popen[str]) -> str:
    """Ctrl+C, then what it printed on stdout."""
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    return out


def marker_lines(out: str, tag: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if tag in line]


@pytest.mark.kernel
@pytest.mark.usefixtures("connector")
def test_watch_ecs_to_stdout_and_otel_to_a_file(tmp_path: Path) -> None:
    tag = "formats-marker"
    out_file = tmp_path / "otel.jsonl"
    with (
        watching("--format", "ecs", "--match", tag) as ecs,
        watching("--format", "otel", "--output", str(out_file), "--match", tag) as otel,
    ):
        subprocess.run(["sh", "-c", "sleep 0.3; exit 5", tag], check=False)
        printed = stop(ecs)
        stop(otel)
    docs = marker_lines(printed, tag)
    exits = [d for d in docs if d["event"]["action"] == "exit"]
    assert exits and exits[-1]["process"]["exit_code"] == 5
    assert exits[-1]["process"]["args"][-1] == tag
    assert "start" in exits[-1]["process"]  # the fork was seen: its time is known
    logs = [otel_attributes(line)[2] for line in marker_lines(out_file.read_text(), tag)]
    codes = [a["process.exit.code"]["intValue"] for a in logs if "process.exit.code" in a]
    assert "5" in codes


@pytest.mark.kernel
def test_collect_writes_ecs(nats_server: NatsServer, tmp_path: Path) -> None:
    tag = "collect-ecs-marker"
    with watching("--output", nats_server.url) as watch:
        subprocess.run(["sh", "-c", "sleep 0.3; true", tag], check=True)
        stop_watch(watch)
    out = tmp_path / "ecs.jsonl"
    done = subprocess.run(
        [
            *TOOL,
            "collect",
            nats_server.url,
            "--format",
            "ecs",
            "--match",
            tag,
            "--output",
            str(out),
            "--duration",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert docs and all(d["ecs"]["version"] == ECS_VERSION for d in docs)
    assert any(d["event"]["action"] == "exec" and tag in d["process"]["args"] for d in docs)


MEMFD = r"""
import os, sys
fd = os.memfd_create("procobsrv-flags")
with open("/bin/true", "rb") as f:
    os.write(fd, f.read())
os.execve(fd, ["payload", sys.argv[1]], {})
"""


def flags_of(doc: dict[str, Any]) -> tuple[str, ...]:
    """The path flags a line says are set, in any format."""
    if "resourceLogs" in doc:
        attributes = otel_attributes(doc)[2]
        return tuple(f for f in FLAGS if attributes.get(f"procobsrv.{f}") == {"boolValue": True})
    if "ecs" in doc:
        return tuple(f for f in FLAGS if doc["procobsrv"].get(f))
    return tuple(f for f in FLAGS if doc[f])


def exec_pid(doc: dict[str, Any]) -> int | None:
    """The pid of an exec line, in any format (None for another kind)."""
    if "resourceLogs" in doc:
        attributes = otel_attributes(doc)[2]
        if attributes["procobsrv.event.kind"] != {"stringValue": "exec"}:
            return None
        return int(attributes["process.pid"]["intValue"])
    if "ecs" in doc:
        return int(doc["process"]["pid"]) if doc["event"]["action"] == "exec" else None
    return int(doc["pid"]) if doc["kind"] == "exec" else None


@pytest.mark.kernel
@pytest.mark.usefixtures("ebpf")
def test_the_path_flags_reach_every_line_format(tmp_path: Path) -> None:
    """On int they were in QueuedItem only: `watch --json`, ECS and OTel lines did not say
    that a fileless program (a memfd: outside the process's root) or a program run from a
    directory deeper than the kernel walks (image and cwd cut) was not what its path says."""
    tag = "path-flags-marker"
    deep = tmp_path.joinpath(*["d"] * (PO_MAX_DEPTH + 6))
    deep.mkdir(parents=True)
    shutil.copy("/bin/true", deep / "true")
    otel_file = tmp_path / "otel.jsonl"
    watch = ("--source", "ebpf", "--match", tag)
    with (
        watching("--json", *watch) as json_watch,
        watching("--format", "ecs", *watch) as ecs_watch,
        watching("--format", "otel", "--output", str(otel_file), *watch) as otel_watch,
    ):
        fileless = subprocess.Popen([sys.executable, "-c", MEMFD, tag])
        cut = subprocess.Popen(["./true", tag], executable="./true", cwd=deep)
        assert fileless.wait() == 0 and cut.wait() == 0
        printed = {"json": stop(json_watch), "ecs": stop(ecs_watch)}
        stop(otel_watch)
    printed["otel"] = otel_file.read_text()
    validate_lines(printed["json"].splitlines())
    for name, out in printed.items():
        execs = [(exec_pid(d), flags_of(d)) for d in marker_lines(out, tag) if exec_pid(d)]
        assert [f for pid, f in execs if pid == cut.pid] == [FLAGS[:2]], (name, out)
        # python's exec is whole and inside its root; the memfd it runs next is not
        assert [f for pid, f in execs if pid == fileless.pid] == [(), FLAGS[2:]], (name, out)
