"""How the console tool shows an event: one aligned line, or one JSON object."""

from __future__ import annotations

import shlex
import signal
import time

from ..events import QueuedItem

#: The EVENT column shows the EventKind values: the names ``--kind`` takes and JSON says.
HEADER = f"{'TIME':<12} {'EVENT':<7} {'PID':>7} {'PPID':>7} {'EXIT':>8}  IMAGE / COMMAND LINE"


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
    if item.command_line:
        return f"{image}  {shlex.join(item.command_line)}"
    return image


def as_line(item: QueuedItem) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(item.timestamp))
    millis = int(item.timestamp * 1000) % 1000
    return (
        f"{clock}.{millis:03d} {item.kind.value:<7} {item.process_id:>7} {item.parent_id:>7} "
        f"{describe_exit(item):>8}  {describe_program(item)}"
    )
