"""``procobsrv trace -- CMD ARGS...``: run a command and record every process it ran.

Monitoring starts before the command, so nothing it spawns is missed. Processes are
followed by fork parentage as their events arrive (:class:`~procobsrv.descendants.Descendants`),
so one that outlives the command, or was re-parented (daemonized), is still part of the
tree. The rule for the end: once the command has exited, trace waits until every process
of its tree has exited too, for at most ``--timeout`` seconds; what still runs then is
shown as running (and left alone). At the end: the tree on stderr, and the files asked for.
trace exits with the command's own status (127: not found, 126: not runnable, 128 + N:
killed by signal N), as a shell reports it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..descendants import Descendants
from ..errors import MonitorError
from ..streams import monitor
from . import arguments
from .signals import on_signals, signal_numbers
from .timeline import Trace, chrome_trace, html_page, tree_text
from .watch import fallback_note

log = logging.getLogger(__name__)

#: Exit statuses a shell gives for a command it could not run.
NOT_FOUND_STATUS = 127
NOT_RUNNABLE_STATUS = 126
SIGNAL_STATUS_BASE = 128
#: Default ``--timeout``: seconds to wait, after the command exits, for what it left running.
DEFAULT_TIMEOUT = 10.0
#: Seconds to wait for the events of a process already known to have started or exited
#: (they are on their way through the kernel's buffer and the pipeline).
SETTLE = 2.0
#: How often the wait for leftover processes looks whether Ctrl+C asked to stop it.
POLL = 0.1

EXAMPLES = """\
examples:
  sudo procobsrv trace -- make -j2              the tree of a build, with durations
  sudo procobsrv trace -o build.json -- make    a Perfetto / chrome://tracing file
  sudo procobsrv trace --html build.html -- ./configure
                                                a Gantt chart to open in a browser
  sudo procobsrv trace --timeout 0 -- ./start-daemon
                                                do not wait for what the command left running
"""


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "trace",
        help="run a command and show every process it ran, as a tree and a timeline",
        description="Run CMD and record its whole process tree (also what outlives it), "
        "then print the tree with each process's start, duration and exit status on stderr. "
        "Exits with CMD's status.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write a Chrome trace-event JSON file (Perfetto, chrome://tracing)",
    )
    p.add_argument(
        "--html", metavar="FILE", help="write a self-contained HTML timeline (Gantt chart)"
    )
    p.add_argument(
        "--timeout",
        type=arguments.age,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="after CMD exits, wait at most this long for the processes it left running "
        f"(default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--source",
        default="auto",
        help="kernel source: auto (default: ebpf, else connector, else the procobsrv "
        "service), ebpf, connector, service (Linux); driver (Windows)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    p.set_defaults(run=run)


def shell_status(returncode: int) -> int:
    """Popen's returncode as a shell reports it: -N (killed by signal N) is 128 + N."""
    return SIGNAL_STATUS_BASE - returncode if returncode < 0 else returncode


def _open_outputs(args: argparse.Namespace) -> dict[str, TextIO]:
    """Open the files first: a typo in a path fails before a long build, not after it."""
    files: dict[str, TextIO] = {}
    try:
        for what, path in (("output", args.output), ("html", args.html)):
            if path:
                files[what] = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by run)
    except OSError as exc:
        for f in files.values():
            f.close()
        raise MonitorError(f"cannot write {exc.filename}: {exc.strerror}") from exc
    return files


def _report(line: str) -> None:
    """A line on stderr, if there is one (trace works with stdout and stderr closed)."""
    stream = sys.stderr
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        stream.write(line)
        stream.flush()


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise MonitorError("trace needs a command: procobsrv trace [-o FILE] -- CMD [ARGS...]")
    files = _open_outputs(args)
    try:
        trace = _trace(command, args.source, args.timeout)
        if isinstance(trace, int):  # it could not run: nothing to show
            return trace
        _report(tree_text(trace))
        if "output" in files:
            json.dump(chrome_trace(trace), files["output"])
        if "html" in files:
            files["html"].write(html_page(trace))
        return trace.status
    finally:
        for f in files.values():
            f.close()


def _trace(command: list[str], source: str, timeout: float) -> Trace | int:
    """Run and follow the command: its Trace, or the shell's status when it could not run."""
    tracer = Descendants()
    stop_waiting = threading.Event()
    with monitor(tracer, source=source) as scope:
        note = fallback_note(source, scope)
        if note:
            _report(f"procobsrv: tracing{note}\n")
        origin = time.monotonic_ns()
        try:
            child = subprocess.Popen(command)
        except FileNotFoundError:
            _report(f"procobsrv: {command[0]}: command not found\n")
            return NOT_FOUND_STATUS
        except OSError as exc:
            _report(f"procobsrv: {command[0]}: {exc.strerror}\n")
            return NOT_RUNNABLE_STATUS

        def forward(signum: int) -> Callable[[], None]:
            return lambda: child.send_signal(signum)

        # Ctrl+C reaches the command from the terminal (its process group): trace waits for
        # it to end, as a shell does. SIGTERM and SIGHUP go to trace alone: passed on.
        running: dict[int, Callable[[], None]] = {signal.SIGINT: lambda: None}
        running.update({s: forward(s) for s in signal_numbers("SIGTERM", "SIGHUP")})
        with on_signals(running):
            status = shell_status(child.wait())
        # Then Ctrl+C (or SIGTERM) stops the wait for leftovers, and the report is written.
        with on_signals({s: stop_waiting.set for s in (signal.SIGINT, signal.SIGTERM)}):
            tracer.wait_seen(child.pid, exited=True, timeout=SETTLE)
            deadline = time.monotonic() + timeout
            while not stop_waiting.is_set() and not tracer.wait_exited(
                min(POLL, max(0.0, deadline - time.monotonic()))
            ):
                if time.monotonic() >= deadline:
                    break
        end = time.monotonic_ns()
    left = tracer.alive()
    if left:
        log.info("%d processes of the tree still run; shown as running", left)
    return Trace(
        command=tuple(command),
        processes=tuple(tracer.subtree(child.pid)),
        origin=origin,
        end=end,
        status=status,
        lost=tracer.lost,
    )
