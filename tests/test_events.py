"""The sources' fast QueuedItem constructor builds exactly what the class builds."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from procobsrv.events import EventKind, QueuedItem
from procobsrv.linux.source import _new_item

#: A distinct value for every field, in declaration order.
VALUES = {
    "kind": EventKind.EXEC,
    "process_id": 4242,
    "parent_id": 1,
    "timestamp": 1.5,
    "monotonic_ns": 7,
    "image": "/usr/bin/true",
    "command_line": ["/bin/true", "x"],
    "exit_code": 3,
    "signal": 9,
    "core_dumped": True,
    "uid": 1000,
    "start_ns": 5,
    "euid": 0,
    "comm": "true",
    "cwd": "/tmp",
    "script": "/tmp/s.sh",
    "command_line_truncated": True,
    "command_line_size": 17,
    "cgroup_id": 99,
    "cgroup": "/user.slice",
}


def test_the_fast_constructor_is_in_use() -> None:
    assert _new_item is not QueuedItem  # not the fallback: the pipeline's cost depends on it
    assert list(VALUES) == [f.name for f in dataclasses.fields(QueuedItem)]


def test_every_field_lands_where_the_class_puts_it() -> None:
    fast, slow = _new_item(*VALUES.values()), QueuedItem(**VALUES)  # type: ignore[arg-type]
    assert type(fast) is QueuedItem
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert dataclasses.asdict(fast) == VALUES
    assert fast.as_dict() == slow.as_dict()


def test_left_out_fields_take_the_class_defaults() -> None:
    fast = _new_item(EventKind.EXITED, 2, 1, 0.5)
    assert fast == QueuedItem(EventKind.EXITED, 2, 1, 0.5)
    assert fast.image is None and fast.core_dumped is False and fast.cgroup is None


def test_a_fast_item_behaves_as_a_frozen_dataclass() -> None:
    item = _new_item(*VALUES.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.process_id = 1  # type: ignore[misc]
    assert not hasattr(item, "__dict__")
    assert pickle.loads(pickle.dumps(item)) == item
    assert copy.copy(item) == item
    assert dataclasses.replace(item, process_id=1).process_id == 1
    assert {item: 1}[QueuedItem(**VALUES)] == 1  # type: ignore[arg-type]


def test_kinds_are_keys_by_identity() -> None:
    counts = {kind: i for i, kind in enumerate(EventKind)}
    assert counts[EventKind("exec")] == 1 and counts[EventKind["EXITED"]] == 2
    assert pickle.loads(pickle.dumps(EventKind.CREATED)) is EventKind.CREATED
    assert len({EventKind.EXEC, EventKind("exec")}) == 1
