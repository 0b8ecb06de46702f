"""How the console tool shows an event: one aligned line, or one JSON object."""

from __future__ import annotations

import shlex
import signal
import time

from ..events import QueuedItem

#: The EVENT column shows the EventKind values: the names ``--kind`` takes and JSON says.
HEADER = f"{'TIME':<12} {'EVENT':<7} {'PID':>7} {'PPID':>7} {'EXIT':>8}  IMAGE / COMMAND LINE"


def describe_exit(item: QueuedItem) -> str:
    return describe_status(item.exit_code, item.signal, item.core_dumped)


def describe_status(exit_code: int | None, signo: int | None, core_dumped: bool) -> str:
    """``3``, ``SIGKILL``, ``SIGSEGV+core``; "" when neither is known."""
    if exit_code is not None:
        return str(exit_code)
    if signo is not None:
        try:
            name = signal.Signals(signo).name
        except ValueError:
            name = f"SIG{signo}"
        return name + ("+core" if core_dumped else "")
    return ""


def _escapes() -> dict[int, str]:
    """What text output must not print raw: C0 controls, DEL and C1 controls (a newline
    would split an event in two, ESC starts a terminal sequence), the bidirectional
    overrides (they reorder what the eye reads) and the lone surrogates that stand for
    bytes which are not UTF-8 (unprintable, and an encoding error on a UTF-8 stream)."""
    table = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
    table.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F))})
    table.update({c: f"\\u{c:04x}" for c in range(0x2066, 0x206A)})
    table.update({0xDC00 + b: f"\\x{b:02x}" for b in range(0x80, 0x100)})  # os.fsdecode's
    return table


_ESCAPES = _escapes()


def escape(text: str) -> str:
    """``text`` with every character that could break a line or the terminal spelled out
    (``\\n``, ``\\x1b``, ``\\u202e``). A backslash stays as it is, so Windows paths stay
    readable: the price is that a literal ``\\n`` in an argument looks like an escaped one."""
    return text if text.isprintable() else text.translate(_ESCAPES)


def describe_program(item: QueuedItem) -> str:
    """Image and command line for text output: escaped, so always exactly one line."""
    image = item.image or "?"
    if item.script is not None:
        image = f"{image} (script {item.script})"
    if item.command_line:
        text = f"{image}  {shlex.join(item.command_line)}"
        if item.command_line_truncated:
            text += f" [truncated: {item.command_line_size} bytes]"
        return escape(text)
    return escape(image)


def as_line(item: QueuedItem) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(item.timestamp))
    millis = int(item.timestamp * 1000) % 1000
    return (
        f"{clock}.{millis:03d} {item.kind.value:<7} {item.process_id:>7} {item.parent_id:>7} "
        f"{describe_exit(item):>8}  {describe_program(item)}"
    )
