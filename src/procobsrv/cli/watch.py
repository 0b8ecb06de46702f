"""``procobsrv watch``: live process events until Ctrl+C / SIGTERM / SIGHUP, then a summary."""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from ..agent import RecordHandler, RecordMaker, Sink
from ..agent.cli import add_output_options, output_from_args
from ..agent.records import dumps
from ..callback import CallbackHandler
from ..errors import MonitorError
from ..events import EventKind, QueuedItem
from ..filters import EventFilter, FilterHandler
from ..platform import current_platform
from ..scope import ApplicationScope
from . import arguments
from .format import HEADER, as_line
from .output import Output

log = logging.getLogger(__name__)


class ConsoleHandler(FilterHandler):
    """Matching events, one line each (aligned text or JSON), and a line for each loss, to
    an :class:`Output`; if monitoring stops on an error, ``done`` is set so that the watch
    ends and says why."""

    def __init__(
        self,
        output: Output,
        done: threading.Event,
        *,
        json_lines: bool = False,
        kinds: set[EventKind] | None = None,
        pattern: re.Pattern[str] | None = None,
        sink: Sink | None = None,
    ) -> None:
        lines: CallbackHandler
        if sink is not None:  # --output FILE / nats://: versioned records (procobsrv schema)
            lines = RecordHandler(sink)
        elif json_lines:  # the same records, to stdout through the output thread
            maker = RecordMaker()
            lines = _Printer(
                output,
                lambda item: dumps(maker.event(item)),
                lambda count: dumps(maker.lost(count)),
            )
        else:
            lines = _Printer(output, as_line, lambda count: f"!! {count} events lost")
        super().__init__(lines, EventFilter(kinds=kinds, match=pattern))
        self.done = done
        self.error: BaseException | None = None

    def on_error(self, error: BaseException, param: Any) -> None:
        self.error = error
        self.done.set()


class _Printer(CallbackHandler):
    def __init__(
        self, output: Output, render: Callable[[QueuedItem], str], render_lost: Callable[[int], str]
    ) -> None:
        self.output = output
        self.render = render
        self.render_lost = render_lost

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        if self.output.reserve():  # once stopping with no room: counted, not even rendered
            self.output.put(self.render(item))

    def on_events_lost(self, count: int, param: Any) -> None:
        self.output.put(self.render_lost(count))


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "watch", help="print process events live", description="Print process events live."
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--kind",
        action="append",
        choices=[k.value for k in EventKind],
        help="only these kinds (repeatable); default: all",
    )
    arguments.add_match_and_duration(p, "image or command line")
    p.add_argument(
        "--source",
        default="auto",
        help="kernel source: auto (default: ebpf when this process may load it, else "
        "connector), ebpf, connector (Linux); driver (Windows)",
    )
    p.add_argument(
        "--realtime",
        action="store_true",
        help="run the monitoring threads SCHED_FIFO for lower latency (root or CAP_SYS_NICE)",
    )
    add_output_options(p)
    p.set_defaults(run=run)


def fallback_note(requested: str, scope: ApplicationScope) -> str:
    """What the watch line says when "auto" had to fall back to the connector on Linux."""
    source = scope.source
    if requested != "auto" or source is None or source.name != "connector":
        return ""
    return (
        " with the connector (command lines of short-lived processes may be missing; "
        "root or CAP_BPF + CAP_PERFMON gives the eBPF source)"
    )


#: Seconds the output may take, after a stop, to write what is queued; the rest is counted.
GRACE = 0.3
#: Exit status when the reader went away (``| head``): 128 + SIGPIPE, what a shell reports
#: for ``cat`` in the same place.
BROKEN_PIPE_STATUS = 141


class Signals:
    """What each signal does to a running watch: the one place that says it. Each stops it
    with the summary (SIGHUP too: the terminal went away, or a service manager asks for a
    stop), except that with ``--output`` SIGHUP ``reopen``s the output (logrotate).

    Python runs a signal's handler between two bytecodes of the main thread, even inside
    the same handler: a SIGHUP that comes while the last one reopens the file is taken here
    as "reopen once more" after it, never nested (thousands at once would recurse, each
    level holding a file open). Once :attr:`stopping` is set, SIGHUP reopens nothing (the
    output is being closed)."""

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP does not exist on Windows

    def __init__(self, stop: Callable[[], None], reopen: Callable[[], None] | None = None) -> None:
        self.stop = stop
        self.reopen = reopen
        self.stopping = False
        self._reopen_again = False
        self._reopening = False

    def signals(self) -> list[int]:
        return [getattr(signal, name) for name in self.NAMES if hasattr(signal, name)]

    def handle(self, signum: int, frame: FrameType | None = None) -> None:
        if self.reopen is None or signum != getattr(signal, "SIGHUP", None):
            self.stop()
            return
        self._reopen_again = True
        if self._reopening:
            return  # the reopen under way loops once more
        self._reopening = True
        try:
            while self._reopen_again and not self.stopping:
                self._reopen_again = False
                self.reopen()
        finally:
            self._reopening = False


@contextlib.contextmanager
def handling(signals: Signals) -> Iterator[None]:
    """Signals run their action (on the main thread) while the block runs. After it, SIGHUP
    is ignored: the summary that follows must not be cut short by its default action."""
    previous = {s: signal.signal(s, signals.handle) for s in signals.signals()}
    try:
        yield
    finally:
        signals.stopping = True
        for s, h in previous.items():
            hangup = s == getattr(signal, "SIGHUP", None)
            signal.signal(s, signal.SIG_IGN if hangup else h)


def reopener(sink: Sink | None) -> Callable[[], None] | None:
    """SIGHUP's action with ``--output``: open the path anew, keeping the old file if the new
    one cannot be opened (monitoring goes on either way)."""
    if sink is None:
        return None

    def reopen() -> None:
        try:
            sink.reopen()
        except MonitorError as exc:
            log.error("%s", exc)

    return reopen


def run(args: argparse.Namespace) -> int:
    sink = output_from_args(args)
    reopen = reopener(sink)
    done = threading.Event()
    output = Output(sys.stdout, on_broken=done.set)
    handler = ConsoleHandler(
        output,
        done,
        json_lines=args.json,
        kinds={EventKind(k) for k in args.kind} if args.kind else None,
        pattern=args.match,
        sink=sink,
    )
    scope = ApplicationScope.get_instance(handler)
    signals = Signals(done.set, reopen)
    with handling(signals):
        if not args.json and sink is None:
            output.put(HEADER)
        try:
            realtime = current_platform().realtime_threads if args.realtime else None
            with realtime() if realtime else contextlib.nullcontext():
                scope.start_monitoring(source=args.source)  # its threads inherit the policy
            output.start()
            note = fallback_note(args.source, scope)
            print(f"procobsrv: watching{note}; Ctrl+C to stop", file=sys.stderr, flush=True)
            done.wait(args.duration)
        finally:
            signals.stopping = True  # SIGHUP from here on: no reopen of what is being closed
            output.stop_waiting()  # the stop must not wait for a reader that does not read
            scope.stop_monitoring()
            output.close(GRACE)
            if sink is not None:
                sink.close()  # delivers what is pending, so that the summary is final
    if output.broken:
        return BROKEN_PIPE_STATUS  # quietly, as cat does under head
    stats = scope.stats()  # every event delivered, matching or not
    seen = ", ".join(f"{stats.delivered.get(k, 0)} {k.value}" for k in EventKind)
    unwritten = f", {output.unwritten} not written (output blocked)" if output.unwritten else ""
    print(
        f"procobsrv: {stats.total} events ({seen}), {stats.lost} lost{unwritten}", file=sys.stderr
    )
    summary = sink.summary() if sink is not None else None
    if summary:
        print(f"procobsrv: {summary}", file=sys.stderr)
    if handler.error is not None:
        raise MonitorError(f"monitoring stopped: {handler.error}") from handler.error
    if output.error is not None:
        raise MonitorError(f"writing the output failed: {output.error}") from output.error
    return 0
