"""One line of output as a versioned record: who saw the event (host, boot), a stable event
id, both clocks, and every QueuedItem field (the JSON Schema is ``event.schema.json``)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from datetime import datetime, timezone
from importlib import resources

from ..events import QueuedItem

#: Bumped whenever a field of the line is added, removed or changes meaning.
SCHEMA_VERSION = 1
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
