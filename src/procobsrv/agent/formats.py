"""A record (:class:`~procobsrv.agent.records.RecordMaker`'s line) in the shapes log shippers
and SIEMs read: an Elastic Common Schema (ECS 8.x) document, or an OpenTelemetry log (OTLP/JSON,
one ``ExportLogsServiceRequest`` per line, process attributes by the semantic conventions).
Functions of the record alone (but for OTel's ``observedTimeUnixNano``, the time of the
mapping): a record in, a JSON-ready dict out; ``docs/formats.md`` lists every field.

Two traps, handled here once: the record's ``uid`` is the *real* uid (ECS and OTel
``process.real_user.id``) and ``euid`` the effective one (``process.user.id``); and the time a
process was created is computed from ``start_ns`` (kernel monotonic ns since boot) plus the
boot's wall-clock time, never taken from the event's own time (an exec or exit comes later).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timezone

from .. import __version__
from .records import Record

#: The ECS version whose field reference the ECS documents follow.
ECS_VERSION = "8.11.0"
#: Names of the line formats the console tool writes (``--format``); ``text`` is watch's own.
RECORD_FORMATS = ("json", "ecs", "otel")
NS_PER_S = 1_000_000_000
#: OpenTelemetry severity numbers (the log data model): INFO and WARN.
SEVERITY_INFO = 9
SEVERITY_WARN = 13
#: What each kind is in ECS: (event.type, event.action).
ECS_KIND = {"created": ("start", "fork"), "exec": ("start", "exec"), "exited": ("end", "exit")}


def boot_time(record: Record) -> float:
    """Wall-clock seconds of the boot: the record's wall time less its monotonic time (the
    two readings of one moment). Monotonic time does not run while the machine sleeps, so
    this is the boot as the monotonic clock sees it: what ``start_ns`` counts from."""
    return float(str(record["timestamp"])) - int(str(record["monotonic_ns"])) / NS_PER_S


def creation_time(record: Record) -> str | None:
    """When the process was created, RFC 3339 UTC, from ``start_ns`` + the boot time; None
    when the source did not know it (``start_ns`` 0: started before monitoring)."""
    start_ns = int(str(record.get("start_ns") or 0))
    if not start_ns:
        return None
    return _iso(boot_time(record) + start_ns / NS_PER_S)


def _iso(seconds: float) -> str:
    """``2026-12-07T22:20:51.725425Z``."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _prune(value: object) -> object:
    """Without the None values and the objects left empty: an unknown field is absent."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v is not None and v != {}}
    return value


def _argv(record: Record) -> list[str] | None:
    argv = record.get("command_line")
    return [str(a) for a in argv] if isinstance(argv, list) else None


def _name(record: Record) -> str | None:
    image = record.get("image")
    if isinstance(image, str):
        return os.path.basename(image.replace("\\", "/"))
    comm = record.get("comm")
    return comm if isinstance(comm, str) else None


def _uid(value: object) -> str | None:
    """ECS user ids are keywords (strings)."""
    return None if value is None else str(value)


def _loss_message(record: Record) -> str:
    return f"{record['count']} process events lost ({record['reason']})"


#: A path that is not what it seems (schema 2; a schema 1 record has none of these).
PATH_FLAGS = ("image_truncated", "cwd_truncated", "image_outside_root")


def _path_flags(record: Record) -> dict[str, object]:
    """The path flags that are set (False ones are left out, like the other flags)."""
    return {flag: record.get(flag) or None for flag in PATH_FLAGS}


def _extra(record: Record) -> dict[str, object]:
    """What neither schema has a field for, under ``procobsrv``."""
    return {
        "kind": record["kind"],
        "signal": record.get("signal"),
        "core_dumped": record.get("core_dumped") or None,
        "script": record.get("script"),
        "comm": record.get("comm"),
        "command_line_truncated": record.get("command_line_truncated") or None,
        "command_line_size": record.get("command_line_size"),
        "cgroup": record.get("cgroup"),
        "cgroup_id": record.get("cgroup_id"),
        "start_ns": record.get("start_ns") or None,
        "monotonic_ns": record["monotonic_ns"],
        **_path_flags(record),
        "pid_ns": record.get("pid_ns"),
        "mnt_ns": record.get("mnt_ns"),
    }


def to_ecs(record: Record) -> Record:
    """One ECS document (nested objects, as Elasticsearch stores them)."""
    kind = str(record["kind"])
    common: dict[str, object] = {
        "@timestamp": _iso(float(str(record["timestamp"]))),
        "ecs": {"version": ECS_VERSION},
        "host": {"name": record["host"], "boot": {"id": record["boot_id"]}},
    }
    if kind == "lost":
        common["event"] = {
            "kind": "event",
            "category": ["process"],
            "type": ["info"],
            "action": "lost",
            "id": record["id"],
        }
        common["message"] = _loss_message(record)
        common["procobsrv"] = {"lost": {"count": record["count"], "reason": record["reason"]}}
        return common
    event_type, action = ECS_KIND[kind]
    argv = _argv(record)
    start_ns = record.get("start_ns") or 0
    common["event"] = {
        "kind": "event",
        "category": ["process"],
        "type": [event_type],
        "action": action,
        "id": record["id"],
    }
    common["process"] = {
        "pid": record["pid"],
        "entity_id": f"{record['boot_id']}:{record['pid']}:{start_ns}" if start_ns else None,
        "vpid": record.get("ns_pid"),
        "parent": {"pid": record["ppid"], "vpid": record.get("ns_ppid")},
        "executable": record.get("image"),
        "name": _name(record),
        "args": argv,
        "args_count": None if argv is None else len(argv),
        "command_line": None if argv is None else " ".join(argv),
        "working_directory": record.get("cwd"),
        "start": creation_time(record),
        "end": common["@timestamp"] if kind == "exited" else None,
        "exit_code": record.get("exit_code") if kind == "exited" else None,
        "user": {"id": _uid(record.get("euid"))},
        "real_user": {"id": _uid(record.get("uid"))},
    }
    common["container"] = {
        "id": record.get("container_id"),
        "runtime": record.get("container_runtime"),
    }
    common["procobsrv"] = _extra(record) | {"pod_uid": record.get("pod_uid")}
    result = _prune(common)
    assert isinstance(result, dict)
    return result


def _value(value: object) -> dict[str, object]:
    """An OTLP/JSON AnyValue: 64-bit integers are decimal strings (the proto3 JSON mapping)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _attributes(pairs: dict[str, object]) -> list[dict[str, object]]:
    return [{"key": k, "value": _value(v)} for k, v in pairs.items() if v is not None]


def to_otel(record: Record) -> Record:
    """One OTLP/JSON ``ExportLogsServiceRequest`` holding one log record (the shape the
    OpenTelemetry Collector's ``otlpjsonfile`` receiver reads, one per line)."""
    kind = str(record["kind"])
    log: dict[str, object] = {
        "timeUnixNano": str(round(float(str(record["timestamp"])) * NS_PER_S)),
        # The log data model's "when the collector observed it": procobsrv, rendering it now
        # (a collect long after the event says so), not the event's own time.
        "observedTimeUnixNano": str(time.time_ns()),
    }
    if kind == "lost":
        log.update(
            severityNumber=SEVERITY_WARN,
            severityText="WARN",
            eventName="procobsrv.events_lost",
            body={"stringValue": _loss_message(record)},
            attributes=_attributes(
                {
                    "procobsrv.lost.count": record["count"],
                    "procobsrv.lost.reason": record["reason"],
                    "procobsrv.event.id": record["id"],
                }
            ),
        )
    else:
        argv = _argv(record)
        exited = kind == "exited"
        described = " ".join(argv) if argv else record.get("image") or "?"
        log.update(
            severityNumber=SEVERITY_INFO,
            severityText="INFO",
            eventName=f"procobsrv.process.{kind}",
            body={"stringValue": f"{kind} {record['pid']} {described}"},
            attributes=_attributes(
                {
                    "process.pid": record["pid"],
                    "process.parent_pid": record["ppid"],
                    "process.vpid": record.get("ns_pid"),
                    "process.executable.path": record.get("image"),
                    "process.executable.name": _name(record),
                    "process.command": argv[0] if argv else None,
                    "process.command_args": argv,
                    "process.args_count": None if argv is None else len(argv),
                    "process.working_directory": record.get("cwd"),
                    "process.creation.time": creation_time(record),
                    "process.exit.code": record.get("exit_code") if exited else None,
                    "process.exit.time": _iso(float(str(record["timestamp"]))) if exited else None,
                    "process.real_user.id": record.get("uid"),
                    "process.user.id": record.get("euid"),
                    "process.linux.cgroup": (
                        f"0::{record['cgroup']}" if record.get("cgroup") is not None else None
                    ),
                    "container.id": record.get("container_id"),
                    "container.runtime.name": record.get("container_runtime"),
                    "k8s.pod.uid": record.get("pod_uid"),
                    "procobsrv.event.id": record["id"],
                    "procobsrv.event.kind": kind,
                    "procobsrv.signal": record.get("signal"),
                    "procobsrv.core_dumped": record.get("core_dumped") or None,
                    "procobsrv.script": record.get("script"),
                    "procobsrv.comm": record.get("comm"),
                    "procobsrv.command_line_truncated": (
                        record.get("command_line_truncated") or None
                    ),
                    "procobsrv.start_ns": record.get("start_ns") or None,
                    "procobsrv.monotonic_ns": record["monotonic_ns"],
                    **{f"procobsrv.{k}": v for k, v in _path_flags(record).items()},
                    "procobsrv.ns_ppid": record.get("ns_ppid"),
                    "procobsrv.pid_ns": record.get("pid_ns"),
                    "procobsrv.mnt_ns": record.get("mnt_ns"),
                }
            ),
        )
    resource = _attributes(
        {
            "service.name": "procobsrv",
            "host.name": record["host"],
            "procobsrv.boot_id": record["boot_id"],
        }
    )
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": resource},
                "scopeLogs": [
                    {"scope": {"name": "procobsrv", "version": __version__}, "logRecords": [log]}
                ],
            }
        ]
    }


def _same(record: Record) -> Record:
    return record


#: ``--format`` name -> the mapping from a procobsrv record to that format's line.
MAPPINGS: dict[str, Callable[[Record], Record]] = {"json": _same, "ecs": to_ecs, "otel": to_otel}
