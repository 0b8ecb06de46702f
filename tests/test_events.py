"""The sources' fast QueuedItem constructor (events.new_item) builds exactly what the class
builds, and takes exactly the class's fields."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle

import pytest

from procobsrv.events import EventKind, QueuedItem, new_item

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
    "image_truncated": True,
    "cwd_truncated": True,
    "image_outside_root": True,
    "ns_pid": 1,
    "ns_ppid": 0,
    "pid_ns": 4026532001,
    "mnt_ns": 4026532002,
}


def test_the_fast_constructor_is_in_use() -> None:
    assert new_item is not QueuedItem  # not the class: the pipeline's cost depends on it
    assert list(VALUES) == [f.name for f in dataclasses.fields(QueuedItem)]
    from procobsrv.linux import connector_source, ebpf_decoder

    assert connector_source.new_item is ebpf_decoder.new_item is new_item  # both decoders use it


def test_its_parameters_are_exactly_the_fields() -> None:
    """A field added to (or renamed, retyped, reordered in) QueuedItem fails here (and at
    import) until new_item follows: a positional call means what it means for the class."""
    fields = dataclasses.fields(QueuedItem)
    parameters = list(inspect.signature(new_item).parameters.values())
    assert [p.name for p in parameters] == [f.name for f in fields]
    for p, f in zip(parameters, fields, strict=True):
        assert p.annotation == f.type, p.name
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        assert p.default == (inspect.Parameter.empty if required else f.default), p.name
        assert p.kind == p.POSITIONAL_OR_KEYWORD, p.name
    assert inspect.signature(new_item).return_annotation == "QueuedItem"


def test_every_field_lands_where_the_class_puts_it() -> None:
    fast, slow = new_item(**VALUES), QueuedItem(**VALUES)  # type: ignore[arg-type]
    assert type(fast) is QueuedItem
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert dataclasses.asdict(fast) == VALUES
    assert fast.as_dict() == slow.as_dict()


def test_left_out_fields_take_the_class_defaults() -> None:
    fast = new_item(EventKind.EXITED, 2, 1, 0.5)
    assert fast == QueuedItem(EventKind.EXITED, 2, 1, 0.5)
    assert fast.image is None and fast.core_dumped is False and fast.cgroup is None
    for f in dataclasses.fields(QueuedItem):  # every slot is set: none raises AttributeError
        assert getattr(fast, f.name) == getattr(QueuedItem(EventKind.EXITED, 2, 1, 0.5), f.name)


def test_exit_code_and_signal_land_in_their_fields() -> None:
    killed = new_item(EventKind.EXITED, 2, 1, 0.5, exit_code=None, signal=9)
    assert (killed.exit_code, killed.signal) == (None, 9)
    exited = new_item(EventKind.EXITED, 2, 1, 0.5, 0, None, None, 3, None)
    assert exited == QueuedItem(EventKind.EXITED, 2, 1, 0.5, 0, None, None, 3, None)


def test_a_fast_item_behaves_as_a_frozen_dataclass() -> None:
    item = new_item(**VALUES)  # type: ignore[arg-type]
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


def test_every_positional_call_names_its_fields() -> None:
    """The decoders' hot loops call new_item positionally (keywords cost 10% of the
    connector source's time), one argument per line with its field named in a comment:
    each comment must be the field that position fills."""
    import ast
    from pathlib import Path

    from procobsrv.linux import connector_source, ebpf_decoder

    fields = [f.name for f in dataclasses.fields(QueuedItem)]
    calls = 0
    for module in (connector_source, ebpf_decoder):
        path = Path(module.__file__ or "")
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in ("new", "new_item"):
                continue
            calls += 1
            assert not node.keywords, f"{path.name}:{node.lineno}: pass every field positionally"
            ends = [arg.end_lineno or arg.lineno for arg in node.args]
            named = [lines[end - 1].rpartition("# ")[2] for end in ends]
            assert named == fields[: len(node.args)], f"{path.name}:{node.lineno}"
    assert calls == 3  # the connector: an unknown process's exit, the rest; eBPF: one
