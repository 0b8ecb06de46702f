"""The connector's ABI mirror (procobsrv.linux.connector_abi) against the kernel's headers.

``_Static_assert``s generated from the ctypes structures (size, alignment, every field's
offset, size and signedness) and the constants are compiled with the host's gcc against
the installed ``<linux/netlink.h>``, ``<linux/connector.h>`` and ``<linux/cn_proc.h>``. The
decoder's struct format and record positions are derived from those structures; the tests
below check that the derivation reads each named field where the kernel writes it. A
deliberately wrong mirror must fail to compile.
"""

from __future__ import annotations

import ctypes
import re
import struct
import subprocess
from pathlib import Path

import pytest

from procobsrv.linux import connector_abi as abi
from procobsrv.linux.connector_decoder import Decoder
from tests.fakes import c_layout
from tests.fakes.c_layout import layout_asserts

INCLUDE = Path("/usr/include/linux")
HEADERS = ["netlink.h", "connector.h", "cn_proc.h"]


def headers() -> list[Path]:
    paths = [INCLUDE / name for name in HEADERS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"kernel headers missing: {missing} (apt install linux-libc-dev)")
    return paths


def asserts(
    structures: dict[str, c_layout.Mirror] = abi.STRUCTURES,
    constants: dict[str, int] = abi.CONSTANTS,
) -> str:
    message = "sizeof(struct nlmsghdr) + sizeof(struct cn_msg)"
    return layout_asserts(
        ["<stddef.h>", "<sys/socket.h>", *(f"<linux/{name}>" for name in HEADERS)],
        structures,
        constants,
        [
            # Where the messages put what the record reads (proc_message is no C struct).
            (f"{message} == {abi.proc_message.event.offset}", "proc_event's offset"),
            (
                f"{message} + offsetof(struct proc_event, event_data) == {abi.UNION_OFFSET}",
                "event_data's offset",
            ),
        ],
    )


def compile_c(source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # _GNU_SOURCE: glibc declares struct mmsghdr (recvmmsg) only then.
    return c_layout.compile_c("gcc", source, tmp_path, defines=["_GNU_SOURCE"])


def test_mirror_compiles_against_the_kernel_headers(tmp_path: Path) -> None:
    headers()
    source = asserts()
    assert source.count("_Static_assert") > 150
    result = compile_c(source, tmp_path)
    assert result.returncode == 0, result.stderr


def _swapped_exit_fields() -> dict[str, c_layout.Mirror]:
    swapped = {
        "exit_code": ("exit_signal", ctypes.c_uint32),
        "exit_signal": ("exit_code", ctypes.c_uint32),
    }

    class exit_proc_event(ctypes.Structure):  # exit_code and exit_signal swapped
        _fields_ = tuple(swapped.get(f[0], f) for f in abi.exit_proc_event._fields_)

    return {**abi.STRUCTURES, "struct exit_proc_event": exit_proc_event}


def _unsigned_pid() -> dict[str, c_layout.Mirror]:
    class fork_proc_event(ctypes.Structure):  # right sizes, wrong sign (pid_t is signed)
        _fields_ = tuple((name, ctypes.c_uint32) for name, *_ in abi.fork_proc_event._fields_)

    return {**abi.STRUCTURES, "struct fork_proc_event": fork_proc_event}


def _short_union() -> dict[str, c_layout.Mirror]:
    class event_data(ctypes.Union):  # comm and exit forgotten: the union is 8 bytes short
        _fields_ = tuple(f for f in abi.event_data._fields_ if f[0] not in ("comm", "exit"))

    return {**abi.STRUCTURES, "__typeof__(((struct proc_event *)0)->event_data)": event_data}


BROKEN = {
    "swapped fields": (_swapped_exit_fields, abi.CONSTANTS, "exit_proc_event.exit_code offset"),
    "wrong sign": (_unsigned_pid, abi.CONSTANTS, "fork_proc_event.parent_pid sign"),
    "short union": (_short_union, abi.CONSTANTS, "sizeof event_data"),
    "wrong constant": (
        lambda: abi.STRUCTURES,
        {**abi.CONSTANTS, "PROC_EVENT_EXIT": 0x40000000},
        "PROC_EVENT_EXIT == 0x40000000",
    ),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_wrong_mirror_fails_to_compile(broken: str, tmp_path: Path) -> None:
    headers()
    structures, constants, message = BROKEN[broken]
    result = compile_c(asserts(structures(), constants), tmp_path)
    assert result.returncode != 0, f"{broken} compiled"
    assert message in result.stderr


def test_mirror_is_complete() -> None:
    """Every constant and structure of cn_proc.h is mirrored (and connector.h's cn_proc ids)."""
    headers()
    text = (INCLUDE / "cn_proc.h").read_text()
    enums = set(re.findall(r"^\s*(PROC_\w+)\s*=", text, re.M))
    assert enums == {name for name in abi.CONSTANTS if name.startswith("PROC_")}
    structs = {f"struct {name}" for name in re.findall(r"struct (\w+) \{", text)}
    assert structs <= set(abi.STRUCTURES)
    # The union's members (minus the enum, the union itself and id's inner unions).
    members = set(re.findall(r"\} (\w+);", text)) - {"what", "event_data", "r", "e"}
    assert members == {name for name, *_ in abi.event_data._fields_}


def _message(**event: int) -> abi.proc_message:
    """A message with a distinct value in every header field, and ``event`` in the union."""
    message = abi.proc_message()
    message.nlh.nlmsg_len, message.nlh.nlmsg_type = ctypes.sizeof(message), abi.NLMSG_DONE
    message.nlh.nlmsg_flags, message.nlh.nlmsg_seq, message.nlh.nlmsg_pid = 3, 4, 5
    message.msg.id.idx, message.msg.id.val = abi.CN_IDX_PROC, abi.CN_VAL_PROC
    message.msg.seq, message.msg.ack, message.msg.flags = 6, 7, 8
    message.msg.len = ctypes.sizeof(abi.proc_event)
    message.event.cpu, message.event.timestamp_ns = 1, 0x1122334455667788
    for path, value in event.items():
        kind, field = path.split("__")
        setattr(getattr(message.event.event_data, kind), field, value)
    return message


def test_the_record_reads_every_header_field_where_the_kernel_writes_it() -> None:
    message = _message()
    message.event.what = abi.PROC_EVENT_NONE
    rec = abi.RECORD.unpack(bytes(message))
    assert rec[abi.NL_LEN] == abi.RECORD_LEN == ctypes.sizeof(abi.proc_message)
    assert rec[abi.NL_TYPE] == abi.NLMSG_DONE
    assert (rec[abi.CN_IDX], rec[abi.CN_VAL]) == (abi.CN_IDX_PROC, abi.CN_VAL_PROC)
    assert (rec[abi.CN_SEQ], rec[abi.CN_ACK], rec[abi.CN_LEN]) == (6, 7, 40)
    assert (rec[abi.WHAT], rec[abi.CPU]) == (abi.PROC_EVENT_NONE, 1)
    assert rec[abi.TIMESTAMP] == 0x1122334455667788


@pytest.mark.parametrize(
    ("what", "fields"),
    [
        (abi.PROC_EVENT_FORK, {"FORK_PARENT_PID": "fork__parent_pid",
                               "FORK_PARENT_TGID": "fork__parent_tgid",
                               "FORK_CHILD_PID": "fork__child_pid",
                               "FORK_CHILD_TGID": "fork__child_tgid"}),
        (abi.PROC_EVENT_EXEC, {"EXEC_PROCESS_PID": "exec__process_pid",
                               "EXEC_PROCESS_TGID": "exec__process_tgid"}),
        (abi.PROC_EVENT_EXIT, {"EXIT_PROCESS_PID": "exit__process_pid",
                               "EXIT_PROCESS_TGID": "exit__process_tgid",
                               "EXIT_EXIT_CODE": "exit__exit_code",
                               "EXIT_EXIT_SIGNAL": "exit__exit_signal",
                               "EXIT_PARENT_PID": "exit__parent_pid",
                               "EXIT_PARENT_TGID": "exit__parent_tgid"}),
        (abi.PROC_EVENT_NONE, {"ACK_ERR": "ack__err"}),
    ],
)  # fmt: skip
def test_each_named_position_reads_its_own_field(what: int, fields: dict[str, str]) -> None:
    values = {path: 100 + i for i, path in enumerate(fields.values())}
    message = _message(**values)
    message.event.what = what
    out: list[abi.Record] = []
    Decoder(cpus=2).decode(bytes(message), 0, ctypes.sizeof(message), out)
    (rec,) = out
    assert {name: rec[getattr(abi, name)] for name in fields} == {
        name: values[path] for name, path in fields.items()
    }


def test_the_subscription_message_is_what_the_kernel_expects() -> None:
    """nlmsghdr + cn_msg (idx, val, seq, ack, len 4, flags) + u32 op, 40 bytes, unpadded."""
    expected = struct.pack("=IHHII IIIIHH I", 40, abi.NLMSG_DONE, 0, 0, 77,
                           abi.CN_IDX_PROC, abi.CN_VAL_PROC, 0, 12345, 4, 0,
                           abi.PROC_CN_MCAST_LISTEN)  # fmt: skip
    assert abi.subscription(abi.PROC_CN_MCAST_LISTEN, 12345, pid=77) == expected
