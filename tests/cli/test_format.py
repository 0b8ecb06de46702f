"""cli/format.py: one text line per event, whatever the program's name or arguments hold."""

from __future__ import annotations

import signal
import time

import pytest

from procobsrv import EventKind, QueuedItem
from procobsrv.cli.format import HEADER, as_line, describe_exit, describe_program, escape

#: A signal number Linux and Windows Python both know nothing of.
UNNAMED_SIGNAL = 77


def exited(**fields: object) -> QueuedItem:
    return QueuedItem(EventKind.EXITED, 42, 1, time.time(), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        ({"exit_code": 3}, "3"),
        ({"exit_code": 0, "signal": signal.SIGKILL}, "0"),  # the code wins where both are set
        ({"signal": signal.SIGTERM}, "SIGTERM"),
        ({"signal": signal.SIGSEGV, "core_dumped": True}, "SIGSEGV+core"),
        ({"signal": UNNAMED_SIGNAL}, f"SIG{UNNAMED_SIGNAL}"),
        ({}, ""),
    ],
)
def test_describe_exit(fields: dict[str, object], shown: str) -> None:
    assert describe_exit(exited(**fields)) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain C:\\Windows\\x.exe", "plain C:\\Windows\\x.exe"),  # a backslash stays
        ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
        ("\x1b[31mred\x7f\x9b", "\\x1b[31mred\\x7f\\x9b"),
        ("\u202eevil", "\\u202eevil"),
        ("raw \udcff byte", "raw \\xff byte"),  # os.fsdecode's surrogate for b"\xff"
    ],
)
def test_escape(text: str, shown: str) -> None:
    assert escape(text) == shown


def test_describe_program_escapes_and_says_what_was_cut() -> None:
    item = QueuedItem(
        EventKind.EXEC,
        42,
        1,
        time.time(),
        image="/usr/bin/python3",
        script="/opt/run me.py",
        command_line=["python3", "/opt/run me.py", "line\nbreak"],
        command_line_truncated=True,
        command_line_size=9000,
    )
    assert describe_program(item) == (
        "/usr/bin/python3 (script /opt/run me.py)  "
        "python3 '/opt/run me.py' 'line\\nbreak' [truncated: 9000 bytes]"
    )
    assert describe_program(QueuedItem(EventKind.CREATED, 42, 1, time.time())) == "?"


def test_as_line_has_the_header_columns() -> None:
    line = as_line(exited(signal=signal.SIGTERM, image="/bin/sh\nx"))
    columns = line.split(maxsplit=5)
    assert columns[1:5] == ["exited", "42", "1", "SIGTERM"] and columns[5] == "/bin/sh\\nx"
    assert "\n" not in line and HEADER.split()[:5] == ["TIME", "EVENT", "PID", "PPID", "EXIT"]
