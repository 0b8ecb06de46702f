"""How the console tool shows an event: one aligned line, or one JSON object."""

from __future__ import annotations

import shlex
import signal
import time

from ..events import EventKind, QueuedItem

LABELS = {EventKind.CREATED: "start", EventKind.EXEC: "exec", EventKind.EXITED: "exit"}
HEADER = f"{'TIME':<12} {'EVENT':<5} {'PID':>7} {'PPID':>7} {'EXIT':>8}  IMAGE / COMMAND LINE"


def describe_exit(item: QueuedItem) -> str:
    if item.exit_code is not None:
        return str(item.exit_code)
    if item.signal is not None:
        try:
            name = signal.Signals(item.signal).name
        except ValueError:
            name = f"SIG{item.signal}"
        return name + ("+core" if item.core_dumped else "")
    return ""


def describe_program(item: QueuedItem) -> str:
    image = item.image or "?"
    if item.script is not None:
        image = f"{image} (script {item.script})"
    if item.command_line:
        text = f"{image}  {shlex.join(item.command_line)}"
        if item.command_line_truncated:
            text += f" [truncated: {item.command_line_size} bytes]"
        return text
    return image


def as_line(item: QueuedItem) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(item.timestamp))
    millis = int(item.timestamp * 1000) % 1000
    return (
        f"{clock}.{millis:03d} {LABELS[item.kind]:<5} {item.process_id:>7} {item.parent_id:>7} "
        f"{describe_exit(item):>8}  {describe_program(item)}"
    )
