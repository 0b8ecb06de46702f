"""``procobsrv demo``: the article's demo. Launch 10 processes, see each start and end."""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from collections import defaultdict
from typing import Any

from ..callback import CallbackHandler
from ..events import EventKind, QueuedItem
from ..scope import ApplicationScope
from .format import describe_exit, describe_program

COUNT = 10
#: Something short-lived and visible on each platform; the demo ends them itself.
PROGRAM = ["notepad.exe"] if sys.platform == "win32" else ["sleep", "60"]
TIMEOUT = 5.0
#: How long to wait for a child's exec (its image) once its start was seen.
EXEC_TIMEOUT = 1.0


class Recorder(CallbackHandler):
    """Keeps every event by pid so the demo can wait for the ones of its own children."""

    def __init__(self) -> None:
        self._events: defaultdict[int, list[QueuedItem]] = defaultdict(list)
        self._changed = threading.Condition()

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        with self._changed:
            self._events[item.process_id].append(item)
            self._changed.notify_all()

    def wait_for(self, pid: int, kind: EventKind, timeout: float) -> QueuedItem | None:
        def find() -> QueuedItem | None:
            return next((e for e in self._events.get(pid, ()) if e.kind is kind), None)

        with self._changed:
            self._changed.wait_for(lambda: find() is not None, timeout)
            return find()


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="launch 10 processes and show them start and end",
        description=f"Start monitoring, launch {COUNT} x {' '.join(PROGRAM)}, end them, "
        "and check that every start and exit was observed.",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    recorder = Recorder()
    scope = ApplicationScope.get_instance(recorder)
    scope.start_monitoring()
    children: list[subprocess.Popen[bytes]] = []
    starts = exits = 0
    try:
        print(f"monitoring; launching {COUNT} x {' '.join(PROGRAM)}", flush=True)
        for n in range(1, COUNT + 1):
            child = subprocess.Popen(PROGRAM, stdin=subprocess.DEVNULL)
            children.append(child)
            created = recorder.wait_for(child.pid, EventKind.CREATED, TIMEOUT)
            if created is None:
                print(f"[{n:2}/{COUNT}] start of pid {child.pid} NOT observed", flush=True)
                continue
            starts += 1
            # On Linux the program's image is known once it has exec'd.
            shown = recorder.wait_for(child.pid, EventKind.EXEC, EXEC_TIMEOUT) or created
            print(
                f"[{n:2}/{COUNT}] started pid {child.pid:<7} parent {created.parent_id:<7} "
                f"{describe_program(shown)}",
                flush=True,
            )
        for n, child in enumerate(children, 1):
            child.terminate()
            child.wait()
            exited = recorder.wait_for(child.pid, EventKind.EXITED, TIMEOUT)
            if exited is None:
                print(f"[{n:2}/{COUNT}] exit of pid {child.pid} NOT observed", flush=True)
                continue
            exits += 1
            print(
                f"[{n:2}/{COUNT}] ended   pid {child.pid:<7} by {describe_exit(exited)}", flush=True
            )
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        scope.stop_monitoring()
    print(f"observed {starts}/{COUNT} starts and {exits}/{COUNT} exits")
    return 0 if starts == exits == COUNT else 1
