"""One line of output as a versioned record: who saw the event (host, boot), a stable event
id, both clocks, and every QueuedItem field (the JSON Schema is ``event.schema.json``)."""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import socket
import time
from datetime import datetime, timezone
from importlib import resources
from json.encoder import encode_basestring_ascii

from ..containers import Container
from ..events import EventKind, QueuedItem

#: Bumped whenever a field of the line is added, removed or changes meaning.
SCHEMA_VERSION = 2
SCHEMA_FILE = "event.schema.json"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
#: Random bytes of the stand-in boot id (as many as a UUID has) and of a maker's nonce.
BOOT_ID_BYTES = 16
NONCE_BYTES = 8

#: A JSON-ready line (``json.dumps`` of it is what the outputs write).
Record = dict[str, object]


def schema_text() -> str:
    """The JSON Schema (draft 2020-12) of one line, as shipped in the package."""
    return resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def read_boot_id(path: str = BOOT_ID_PATH) -> str:
    """The kernel's boot id (a UUID, new at each boot); on a system without one (Windows),
    a random UUID-shaped id for this process, so that ids stay unique there too."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        raw = os.urandom(BOOT_ID_BYTES).hex()
        return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def wall_time(seconds: float) -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2026-12-01T20:24:08.123456+00:00``."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="microseconds")


def original_bytes(text: str) -> bytes:
    """The bytes a path, argument or name of a line stands for (what the kernel had).

    Strings in a line are the kernel's bytes decoded as UTF-8; a byte that is not part of
    valid UTF-8 becomes the lone surrogate U+DC80 + byte (Python's ``surrogateescape``, what
    ``os.fsdecode`` gives), written in JSON as ``\\udcXX``. ``json.loads`` keeps it as it is,
    so this gives back the exact bytes: ``original_bytes(record["command_line"][1])``.
    """
    return text.encode("utf-8", "surrogateescape")


_MICROS_PER_SECOND = 1_000_000
_modf = math.modf
_KIND_NAMES = {kind: kind.value for kind in EventKind}  # Enum.value is a slow property
#: Year 5138: far past any kernel timestamp, and well inside what datetime can show.
_LAST_FAST_SECOND = 1e11
_string = encode_basestring_ascii  # json.dumps's own escaping of a str, quotes included


class RecordMaker:
    """Makes the records of one collector process.

    Event ids are ``<boot_id>:<kind>:<pid>:<monotonic_ns>``: derived from what the kernel
    said, so that two collectors on the same host (or a collector restarted, or a publish
    retried) give the *same* event the same id and downstream de-duplication works, while two
    different events cannot share one (one process cannot fork, exec or exit twice of the same
    kind in one nanosecond, and the boot id makes the monotonic clock unique per host).
    Loss records and events without a kernel timestamp belong to this collector only: their
    id carries a random per-process nonce and a counter, so no restart can repeat it.
    """

    def __init__(self, host: str | None = None, boot_id: str | None = None) -> None:
        self.host = host if host is not None else socket.gethostname()
        self.boot_id = boot_id if boot_id is not None else read_boot_id()
        self._nonce = os.urandom(NONCE_BYTES).hex()
        self._local = itertools.count(1)
        self._second = -1  # the second whose date and time of day _time_prefix holds
        self._time_prefix = ""
        # The constant parts of an event line, escaped once.
        self._head = (
            f'{{"schema_version":{SCHEMA_VERSION},"id":',
            f',"host":{_string(self.host)},"boot_id":{_string(self.boot_id)},"monotonic_ns":',
        )
        self._id_prefix = _string(self.boot_id)[:-1]  # '"<boot_id>' (no closing quote)

    def _local_id(self, kind: str) -> str:
        return f"{self.boot_id}:{kind}:{self._nonce}:{next(self._local)}"

    def event(self, item: QueuedItem) -> Record:
        kind = item.kind.value
        if item.monotonic_ns:
            event_id = f"{self.boot_id}:{kind}:{item.process_id}:{item.monotonic_ns}"
        else:
            event_id = self._local_id(kind)
        record: Record = {
            "schema_version": SCHEMA_VERSION,
            "id": event_id,
            "host": self.host,
            "boot_id": self.boot_id,
            "monotonic_ns": item.monotonic_ns,
            "time": wall_time(item.timestamp),
        }
        record.update(item.as_dict())
        return record

    def event_line(self, item: QueuedItem) -> str:
        """``dumps(self.event(item))``, character for character, in a fraction of the time:
        the line of ``watch --json`` and ``--output FILE`` (built here from fragments escaped
        once; strings through json's own escaping)."""
        kind = _KIND_NAMES[item.kind]
        pid = item.process_id
        monotonic_ns = item.monotonic_ns
        if monotonic_ns:
            event_id = f'{self._id_prefix}:{kind}:{pid}:{monotonic_ns}"'
        else:
            event_id = _string(self._local_id(kind))
        # wall_time(timestamp) with datetime's own rounding (the fraction rounded half to
        # even, which may carry a second), its date and time of day made once per second.
        timestamp = item.timestamp
        if 0 <= timestamp < _LAST_FAST_SECOND:
            fraction, whole = _modf(timestamp)
            micros = round(fraction * 1e6)
            second = int(whole)
            if micros >= _MICROS_PER_SECOND:
                micros -= _MICROS_PER_SECOND
                second += 1
            if second != self._second:
                self._time_prefix = wall_time(second)[: -len(".000000+00:00")]
                self._second = second
            when = f"{self._time_prefix}.{micros:06d}+00:00"
        else:  # not a time the shortcut was checked for
            when = wall_time(timestamp)
        argv = item.command_line
        image, comm, cwd, script, cgroup = item.image, item.comm, item.cwd, item.script, item.cgroup
        exit_code, sig, uid, euid = item.exit_code, item.signal, item.uid, item.euid
        size, cgroup_id = item.command_line_size, item.cgroup_id
        ns_pid, ns_ppid, pid_ns, mnt_ns = item.ns_pid, item.ns_ppid, item.pid_ns, item.mnt_ns
        container = _container_line(item.container)
        head, middle = self._head
        return (
            f"{head}{event_id}{middle}{monotonic_ns}"
            f',"time":"{when}","kind":"{kind}","pid":{pid}'
            f',"ppid":{item.parent_id},"timestamp":{timestamp!r}'
            f',"image":{"null" if image is None else _string(image)}'
            f',"command_line":{"null" if argv is None else _array(argv)}'
            f',"exit_code":{"null" if exit_code is None else exit_code}'
            f',"signal":{"null" if sig is None else sig}'
            f',"core_dumped":{"true" if item.core_dumped else "false"}'
            f',"uid":{"null" if uid is None else uid},"start_ns":{item.start_ns}'
            f',"euid":{"null" if euid is None else euid}'
            f',"comm":{"null" if comm is None else _string(comm)}'
            f',"cwd":{"null" if cwd is None else _string(cwd)}'
            f',"script":{"null" if script is None else _string(script)}'
            f',"command_line_truncated":{"true" if item.command_line_truncated else "false"}'
            f',"command_line_size":{"null" if size is None else size}'
            f',"cgroup_id":{"null" if cgroup_id is None else cgroup_id}'
            f',"cgroup":{"null" if cgroup is None else _string(cgroup)}'
            f',"image_truncated":{"true" if item.image_truncated else "false"}'
            f',"cwd_truncated":{"true" if item.cwd_truncated else "false"}'
            f',"image_outside_root":{"true" if item.image_outside_root else "false"}'
            f',"ns_pid":{"null" if ns_pid is None else ns_pid}'
            f',"ns_ppid":{"null" if ns_ppid is None else ns_ppid}'
            f',"pid_ns":{"null" if pid_ns is None else pid_ns}'
            f',"mnt_ns":{"null" if mnt_ns is None else mnt_ns}'
            f"{container}}}"
        )

    def lost_line(self, count: int, reason: str = "pipeline") -> str:
        """``dumps(self.lost(count, reason))``."""
        return dumps(self.lost(count, reason))

    def lost(self, count: int, reason: str = "pipeline") -> Record:
        """A loss record: ``count`` events that this collector could not deliver.

        ``reason``: ``pipeline`` (the kernel or the queue dropped them, as counted by the
        monitor) or ``output`` (the output's buffer overflowed while its server was away).
        """
        now = time.time()
        return {
            "schema_version": SCHEMA_VERSION,
            "id": self._local_id("lost"),
            "host": self.host,
            "boot_id": self.boot_id,
            "monotonic_ns": time.monotonic_ns(),
            "time": wall_time(now),
            "timestamp": now,
            "kind": "lost",
            "count": count,
            "reason": reason,
        }


def dumps(record: Record) -> str:
    """One compact JSON line, without the newline."""
    return json.dumps(record, separators=(",", ":"))


def _array(strings: list[str]) -> str:
    return f"[{','.join(map(_string, strings))}]"


_NO_CONTAINER = ',"container_id":null,"container_runtime":null,"pod_uid":null'


@functools.lru_cache(maxsize=256)
def _container_line(container: Container | None) -> str:
    """The container's fields of a line, escaped once per container."""
    if container is None:
        return _NO_CONTAINER
    pod = container.pod_uid
    return (
        f',"container_id":{_string(container.id)}'
        f',"container_runtime":{_string(container.runtime)}'
        f',"pod_uid":{"null" if pod is None else _string(pod)}'
    )


#: The fields :meth:`RecordMaker.event_line` writes after the envelope, in its order.
_EVENT_LINE_FIELDS = (
    "kind", "pid", "ppid", "timestamp", "image", "command_line", "exit_code", "signal",
    "core_dumped", "uid", "start_ns", "euid", "comm", "cwd", "script",
    "command_line_truncated", "command_line_size", "cgroup_id", "cgroup",
    "image_truncated", "cwd_truncated", "image_outside_root",
    "ns_pid", "ns_ppid", "pid_ns", "mnt_ns", "container_id", "container_runtime", "pod_uid",
)  # fmt: skip


def _check_event_line() -> None:
    """A field added to ``QueuedItem.as_dict`` must be added to ``event_line`` too: fail at
    import rather than write lines that silently lack it."""
    if tuple(QueuedItem(EventKind.EXEC, 0, 0, 0.0).as_dict()) != _EVENT_LINE_FIELDS:
        raise TypeError("RecordMaker.event_line must write QueuedItem.as_dict's fields")


_check_event_line()


#: The fields every line has (the schema's envelope).
ENVELOPE_FIELDS = ("schema_version", "id", "host", "boot_id", "monotonic_ns", "time", "timestamp")
#: The fields that make a line of each kind, after the envelope: those that tell a procobsrv
#: record from any other JSON object. Not every field of the schema, so that a line of
#: another schema version (one field more or less) is still taken for what it is.
KIND_FIELDS = dict.fromkeys((kind.value for kind in EventKind), ("kind", "pid", "ppid")) | {
    "lost": ("kind", "count", "reason")
}


def is_record(value: object) -> bool:
    """Whether a decoded JSON value is shaped like a line: an object of a known ``kind`` with
    the envelope and the fields of :data:`KIND_FIELDS` (their values are not checked)."""
    if not isinstance(value, dict):
        return False
    kind = value.get("kind")
    fields = KIND_FIELDS.get(kind) if isinstance(kind, str) else None
    return fields is not None and all(f in value for f in (*ENVELOPE_FIELDS, *fields))
