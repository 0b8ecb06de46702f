"""What ``procobsrv serve`` and its clients say to each other: JSON lines, versioned.

Why JSON lines, and these ones: an event is the record of ``procobsrv schema`` (what
``watch --json`` prints, written by the same fast writer), so the wire needs no format of
its own, carries every field the record has (a later schema's fields come along without a
change here), can be read with ``socat - UNIX-CONNECT:/run/procobsrv/events.sock | jq``,
and is decoded by the standard library's C parser. A binary record would be smaller, but
the cost per event is in the Python objects at either end, not in the bytes (see
``python -m benchmarks.service``).

The conversation (``\\n`` ends every line):

1. the client: ``{"procobsrv":"events","protocol":1}`` (within HELLO_TIMEOUT, at most
   MAX_HELLO bytes); then nothing more;
2. the service: ``{"procobsrv":"events","protocol":1,"schema_version":1,"source":...,
   "uid":...,"sees":"all"|"own"}``, or ``{"kind":"error","reason":...}`` and it closes;
3. the service: records, ``kind`` one of ``created``, ``exec``, ``exited`` (events),
   ``lost`` (``count`` events this client will not get, before what follows them) and, last,
   ``end`` (``reason``: the service stopped) or ``error`` (``reason``).

A client ignores records of a kind it does not know (a later protocol may add some).
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..agent.records import SCHEMA_VERSION, RecordMaker, dumps
from ..events import EventKind, QueuedItem, new_item

#: Bumped when the conversation changes (the records have their own ``schema_version``).
PROTOCOL = 1
MAGIC = "events"
#: Seconds a client has to send its hello line once connected (it sends it at once; this
#: leaves room for a machine so loaded that the client is not scheduled for seconds).
HELLO_TIMEOUT = 10.0
#: The longest hello line the service reads.
MAX_HELLO = 1024
#: The longest record a client accepts (the longest argv the sources capture is far shorter).
MAX_LINE = 4 << 20

_KINDS = {kind.value: kind for kind in EventKind}
#: QueuedItem's fields and the record's key for each (as ``QueuedItem.as_dict`` names them).
_RENAMED = {"process_id": "pid", "parent_id": "ppid"}
_FIELDS: list[tuple[str, Any]] = [
    (_RENAMED.get(f.name, f.name), None if f.default is dataclasses.MISSING else f.default)
    for f in dataclasses.fields(QueuedItem)
][1:]  # kind first, converted apart


class WireError(ValueError):
    """A line that is not what the conversation says comes next."""


def client_hello() -> bytes:
    return _line({"procobsrv": MAGIC, "protocol": PROTOCOL})


def check_client_hello(line: bytes) -> None:
    """Raises WireError unless ``line`` (without its newline) is a hello this service speaks."""
    try:
        hello = json.loads(line)
    except ValueError as exc:
        raise WireError(f"the hello line is not JSON ({exc})") from exc
    if not isinstance(hello, dict) or hello.get("procobsrv") != MAGIC:
        raise WireError('the hello line must be {"procobsrv":"events","protocol":N}')
    if hello.get("protocol") != PROTOCOL:
        raise WireError(
            f"protocol {hello.get('protocol')!r} is not spoken here (this service: {PROTOCOL})"
        )


def service_hello(source: str, uid: int, sees_all: bool) -> bytes:
    return _line(
        {
            "procobsrv": MAGIC,
            "protocol": PROTOCOL,
            "schema_version": SCHEMA_VERSION,
            "source": source,
            "uid": uid,
            "sees": "all" if sees_all else "own",
        }
    )


def check_service_hello(line: bytes) -> dict[str, Any]:
    """The service's hello, decoded; WireError if it is an error or another protocol."""
    try:
        hello = json.loads(line)
    except ValueError as exc:
        raise WireError(f"the service's first line is not JSON ({exc})") from exc
    if isinstance(hello, dict) and hello.get("kind") == "error":
        raise WireError(f"the service refused this client: {hello.get('reason')}")
    if not isinstance(hello, dict) or hello.get("procobsrv") != MAGIC:
        raise WireError("the peer is not a procobsrv event service")
    if hello.get("protocol") != PROTOCOL:
        raise WireError(
            f"the service speaks protocol {hello.get('protocol')!r}; this client, {PROTOCOL}"
        )
    return hello


def end_line(reason: str) -> bytes:
    return _line({"kind": "end", "reason": reason})


def error_line(reason: str) -> bytes:
    return _line({"kind": "error", "reason": reason})


def _line(record: dict[str, object]) -> bytes:
    return (dumps(record) + "\n").encode()


class Encoder:
    """Turns what a client's window gave (events, losses before them) into bytes.

    A batch taken whole from a window is the very list the retrieval thread offered every
    subscriber (or the one a shared sieve made): clients that keep up get the same object,
    so its bytes are made once and remembered for the next client (the last few only)."""

    REMEMBERED = 32

    def __init__(self, maker: RecordMaker | None = None) -> None:
        self.maker = RecordMaker() if maker is None else maker
        self._made: OrderedDict[int, tuple[Sequence[QueuedItem], bytes]] = OrderedDict()

    def encode(self, items: Sequence[QueuedItem], lost: int) -> bytes:
        data = self._events(items) if items else b""
        if lost:
            data = (self.maker.lost_line(lost) + "\n").encode() + data
        return data

    def _events(self, items: Sequence[QueuedItem]) -> bytes:
        made = self._made.get(id(items))
        if made is not None and made[0] is items:
            return made[1]
        line = self.maker.event_line
        data = ("\n".join([line(item) for item in items]) + "\n").encode()
        self._made[id(items)] = (items, data)  # the items kept: their id cannot be reused
        if len(self._made) > self.REMEMBERED:
            self._made.popitem(last=False)
        return data


@dataclasses.dataclass
class Decoded:
    """What some lines said: events, events lost before the last of them, and the end."""

    items: list[QueuedItem] = dataclasses.field(default_factory=list)
    lost: int = 0
    #: Why the stream ended (the service's ``end`` or ``error`` record), if it did.
    end: str | None = None
    error: bool = False


class Decoder:
    """Splits the service's bytes into records and records into QueuedItems."""

    def __init__(self) -> None:
        self._tail = b""  # a line not complete yet

    def feed(self, data: bytes, out: Decoded) -> None:
        """Decode the complete lines of ``self._tail + data`` into ``out``."""
        data = self._tail + data if self._tail else data
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:]
        if len(self._tail) > MAX_LINE:
            raise WireError(f"a record longer than {MAX_LINE} bytes: not a procobsrv service")
        if not cut:
            return
        try:  # one parser call for the lot: the common case
            records = json.loads(b"[" + data[: cut - 1].replace(b"\n", b",") + b"]")
        except ValueError:
            records = [_record(line) for line in data[: cut - 1].split(b"\n")]
        for record in records:
            _take(record, out)
            if out.end is not None:
                return


def _record(line: bytes) -> object:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise WireError(f"the service sent a line that is not JSON ({exc})") from exc


def _take(record: object, out: Decoded) -> None:
    if not isinstance(record, dict):
        raise WireError("the service sent a line that is not a record")
    kind = record.get("kind")
    event = _KINDS.get(kind) if isinstance(kind, str) else None
    if event is not None:
        out.items.append(item_from_record(record, event))
    elif kind == "lost":
        out.lost += int(record["count"])
    elif kind in ("end", "error"):
        out.end, out.error = str(record.get("reason", "")), kind == "error"
    # any other kind: from a later protocol, of no concern to this client


def item_from_record(record: dict[str, Any], kind: EventKind | None = None) -> QueuedItem:
    """The QueuedItem a record (``procobsrv schema``) stands for: every field the record has,
    the default for any it lacks (a record of an older schema)."""
    if kind is None:
        kind = _KINDS[record["kind"]]
    get = record.get
    values: list[Any] = [get(key, default) for key, default in _FIELDS]
    return new_item(kind, *values)
