#!/usr/bin/env python3
"""Run a command, show every process of its tree start and end, report when the tree has ended.

    python examples/watch_tree.py -- make -j4
    python examples/watch_tree.py --timeout 60 -- sh -c 'sleep 1 & sleep 2; wait'

The tree is the command and every process created by a member of the tree. It has ended
when the last member has exited, which can be after the command itself (a background
child it left running). The exit code is the command's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from typing import Any

from procobsrv import ApplicationScope, CallbackHandler, EventKind, QueuedItem

#: Exit statuses, as timeout(1) and a shell report them: timed out, interrupted (Ctrl+C).
TIMED_OUT_STATUS = 124
INTERRUPTED_STATUS = 130


class TreeWatcher(CallbackHandler):
    """Follows one process tree, given its root's pid."""

    def __init__(self) -> None:
        self.root: int | None = None
        self.depth: dict[int, int] = {}  # live members -> depth below the root
        self.members = 0
        self.started_ns = 0
        self.ended_ns = 0
        self.ended = threading.Event()
        self._lock = threading.Lock()
        # Events that arrived before we knew the root's pid: the child can fork before
        # Popen returns its pid to us, so those are replayed once the root is known.
        self._early: list[QueuedItem] = []

    def set_root(self, pid: int) -> None:
        with self._lock:
            self.root = pid
            early, self._early = self._early, []
            for item in early:
                self._follow(item)

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        with self._lock:
            if self.root is None:
                self._early.append(item)
            else:
                self._follow(item)

    def _follow(self, item: QueuedItem) -> None:
        pid = item.process_id
        if item.kind is EventKind.CREATED:
            if pid == self.root:
                self.depth[pid] = 0
                self.started_ns = item.monotonic_ns
            elif item.parent_id in self.depth:
                self.depth[pid] = self.depth[item.parent_id] + 1
            else:
                return
            self.members += 1
        elif pid not in self.depth:
            return
        indent = "  " * self.depth[pid]
        if item.kind is EventKind.EXEC:
            print(f"{indent}{pid} runs {' '.join(item.command_line or [item.image or '?'])}")
        elif item.kind is EventKind.EXITED:
            del self.depth[pid]
            how = (
                f"exit {item.exit_code}" if item.exit_code is not None else f"signal {item.signal}"
            )
            print(f"{indent}{pid} ended ({how})")
            if not self.depth:
                self.ended_ns = item.monotonic_ns
                self.ended.set()
        else:
            print(f"{indent}{pid} started (parent {item.parent_id})")
        sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command to run, e.g. -- sh -c 'sleep 1 & wait'")

    watcher = TreeWatcher()
    scope = ApplicationScope.get_instance(watcher)
    scope.start_monitoring()  # before the command starts, so no member can be missed
    try:
        child = subprocess.Popen(command)
        watcher.set_root(child.pid)
        code = child.wait()
        if not watcher.ended.wait(args.timeout):
            print(
                f"tree of {child.pid}: still running after {args.timeout} s: "
                f"{sorted(watcher.depth)}",
                file=sys.stderr,
            )
            return TIMED_OUT_STATUS
    except KeyboardInterrupt:
        return INTERRUPTED_STATUS
    finally:
        scope.stop_monitoring()
    seconds = (watcher.ended_ns - watcher.started_ns) / 1e9
    print(
        f"tree of {child.pid} ended: {watcher.members} processes in {seconds:.3f} s, "
        f"command exit code {code}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
