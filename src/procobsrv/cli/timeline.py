"""What ``procobsrv trace`` shows of a traced process tree: a text tree, a Chrome trace-event
(Perfetto) file, and a self-contained HTML Gantt chart. Pure functions of the processes."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from importlib import resources

from ..descendants import Spawned
from .format import describe_status, escape

#: The HTML page; ``/*TRACE*/`` is replaced by the trace's data (a JSON object).
HTML_TEMPLATE = "timeline.html"
DATA_MARK = "/*TRACE*/null"
#: Text columns: argv longer than this is cut (the files keep it whole).
ARGV_WIDTH = 160
NS_PER_US = 1000
NS_PER_S = 1e9


@dataclass(frozen=True)
class Row:
    """One process in tree order: its depth under the root, and whether it is its parent's
    last child (for the tree's lines)."""

    process: Spawned
    depth: int
    prefix: str


@dataclass(frozen=True)
class Trace:
    """The traced tree: ``processes`` in creation order, the root first; times are kernel
    monotonic ns, ``origin`` being the moment the trace began and ``end`` when it stopped
    looking (what still ran then is drawn up to ``end``)."""

    command: tuple[str, ...]
    processes: tuple[Spawned, ...]
    origin: int
    end: int
    status: int
    lost: int = 0


def rows(trace: Trace) -> list[Row]:
    """The processes depth first, children in creation order, with the tree's drawing."""
    children: dict[tuple[int, int] | None, list[Spawned]] = {}
    for node in trace.processes:
        children.setdefault(node.parent, []).append(node)
    if not trace.processes:
        return []
    out: list[Row] = []

    def walk(node: Spawned, depth: int, lead: str, last: bool) -> None:
        branch = "" if depth == 0 else lead + ("└─ " if last else "├─ ")
        out.append(Row(node, depth, branch))
        kids = children.get(node.key, [])
        below = "" if depth == 0 else lead + ("   " if last else "│  ")
        for i, kid in enumerate(kids):
            walk(kid, depth + 1, below, i == len(kids) - 1)

    root = trace.processes[0]
    # A process whose parent is not in the tree (never: the tree is a subtree) would be
    # lost by the walk; the root's own siblings are not part of the trace.
    walk(root, 0, "", True)
    return out


def status_text(node: Spawned) -> str:
    """``0``, ``2``, ``SIGKILL``, ``SIGSEGV+core``, or ``running`` (not seen to exit)."""
    return describe_status(node.exit_code, node.signal, node.core_dumped) or "running"


def command_text(node: Spawned) -> str:
    """argv; a process that never exec'd runs its creator's program: said as ``(fork)``."""
    text = shlex.join(node.argv) if node.argv else node.image or "?"
    return text if node.execs else f"(fork) {text}"


def _end(node: Spawned, trace: Trace) -> int:
    return node.exit_ns if node.exit_ns is not None else trace.end


def tree_text(trace: Trace) -> str:
    """The tree as text: start (after the trace began), duration, exit status, pid, argv."""
    drawn = rows(trace)
    total = (trace.end - trace.origin) / NS_PER_S
    head = (
        f"procobsrv: trace of {escape(shlex.join(trace.command))}: exit status {trace.status}, "
        f"{total:.3f} s, {len(drawn)} processes"
    )
    if trace.lost:
        head += f", {trace.lost} events lost (the tree may be incomplete)"
    lines = [head, f"{'START':>9} {'DURATION':>9} {'EXIT':>8} {'PID':>7}  COMMAND"]
    for row in drawn:
        node = row.process
        start = (node.start_ns - trace.origin) / NS_PER_S
        duration = (_end(node, trace) - node.start_ns) / NS_PER_S
        command = escape(command_text(node))
        if len(command) > ARGV_WIDTH:
            command = command[: ARGV_WIDTH - 1] + "…"
        lines.append(
            f"{start:>+8.3f}s {duration:>8.3f}s {status_text(node):>8} {node.pid:>7}  "
            f"{row.prefix}{command}"
        )
    return "\n".join(lines) + "\n"


def _args(node: Spawned) -> dict[str, object]:
    return {
        "pid": node.pid,
        "ppid": node.ppid,
        "argv": list(node.argv) if node.argv is not None else None,
        "image": node.image,
        "cwd": node.cwd,
        "exit_code": node.exit_code,
        "signal": node.signal,
        "status": status_text(node),
    }


def chrome_trace(trace: Trace) -> dict[str, object]:
    """A Chrome trace-event file (Perfetto and chrome://tracing read it): one complete
    event ("ph": "X") per process, each on a track of its own (``tid``: its row in the
    tree, depth first, so a child's track is under its parent's), all in one process group
    named after the command. Times in microseconds since the trace began."""
    group = trace.processes[0].pid if trace.processes else 0
    events: list[dict[str, object]] = [
        {
            "name": "process_name",
            "ph": "M",
            "pid": group,
            "tid": 0,
            "args": {"name": f"procobsrv trace: {shlex.join(trace.command)}"},
        }
    ]
    for track, row in enumerate(rows(trace), start=1):
        node = row.process
        label = f"{'  ' * row.depth}{node.name or '?'} [{node.pid}]"
        events.append(
            {"name": "thread_name", "ph": "M", "pid": group, "tid": track, "args": {"name": label}}
        )
        events.append(
            {
                "name": "thread_sort_index",
                "ph": "M",
                "pid": group,
                "tid": track,
                "args": {"sort_index": track},
            }
        )
        events.append(
            {
                "name": node.name or "?",
                "cat": "process",
                "ph": "X",
                "ts": (node.start_ns - trace.origin) / NS_PER_US,
                "dur": (_end(node, trace) - node.start_ns) / NS_PER_US,
                "pid": group,
                "tid": track,
                "args": _args(node),
            }
        )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "command": list(trace.command),
            "exit_status": trace.status,
            "events_lost": trace.lost,
        },
    }


def html_page(trace: Trace) -> str:
    """A page with no outside reference (no network, no external script) that draws the
    tree as a Gantt chart: wheel to zoom, drag to pan, hover for the details."""
    data = {
        "command": list(trace.command),
        "command_text": shlex.join(trace.command),
        "status": trace.status,
        "lost": trace.lost,
        "total_ms": (trace.end - trace.origin) / 1e6,
        "rows": [
            {
                "depth": row.depth,
                "name": row.process.name or "?",
                "start_ms": (row.process.start_ns - trace.origin) / 1e6,
                "end_ms": (_end(row.process, trace) - trace.origin) / 1e6,
                "running": row.process.alive,
                "ok": row.process.status == 0,
                **_args(row.process),
            }
            for row in rows(trace)
        ],
    }
    # Inside <script>, "</script>" or "<!--" in an argument would end the script early.
    text = json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e")
    template = resources.files(__package__).joinpath(HTML_TEMPLATE).read_text(encoding="utf-8")
    return template.replace(DATA_MARK, text, 1)
