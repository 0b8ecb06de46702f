"""``procobsrv watch``: live process events until Ctrl+C / SIGTERM / SIGHUP, then a summary."""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

from ..agent import RecordHandler, RecordMaker, Sink
from ..agent.cli import add_format_option, add_output_options, line_format, output_from_args
from ..agent.formats import MAPPINGS
from ..agent.records import Record, dumps
from ..callback import CallbackHandler
from ..errors import MonitorError
from ..events import EventKind, QueuedItem
from ..filters import EventFilter, FilterHandler
from ..host import current_platform
from ..platform import SourceChoice
from ..scope import ApplicationScope
from . import arguments
from .format import HEADER, as_line
from .output import Output
from .signals import Signals, handling

log = logging.getLogger(__name__)

EXAMPLES = """\
examples:
  sudo procobsrv watch                          every process event, aligned columns
  sudo procobsrv watch --kind exec --match ssh  programs whose path or argv says ssh
  sudo procobsrv watch --container 4c5e1f6a2b   processes in that container (id prefix)
  sudo procobsrv watch --format ecs --output /var/log/procobsrv/events.ecs.jsonl
                                                ECS documents for a log shipper
  sudo procobsrv watch --json | jq .command_line
                                                procobsrv's own records, to jq
"""


class ConsoleHandler(CallbackHandler):
    """Matching events, one line each (aligned text or JSON records), and a line for each
    loss, to an :class:`Output` (stdout or ``--output FILE``), or records to a ``sink``
    (``--output nats://``); if monitoring stops on an error, ``done`` is set so that the
    watch ends and says why."""

    def __init__(
        self,
        output: Output | None,
        done: threading.Event,
        *,
        json_lines: bool = False,
        kinds: set[EventKind] | None = None,
        pattern: re.Pattern[str] | None = None,
        containers: list[str] | None = None,
        sink: Sink | None = None,
        mapping: Callable[[Record], Record] = MAPPINGS["json"],
    ) -> None:
        lines: CallbackHandler
        if sink is not None:  # --output nats://: versioned records (procobsrv schema)
            lines = RecordHandler(sink, mapping=mapping)
        elif output is None:
            raise ValueError("ConsoleHandler needs an output or a sink")
        elif json_lines and mapping is MAPPINGS["json"]:  # records, built without json.dumps
            maker = RecordMaker()
            lines = _Printer(output, maker.event_line, maker.lost_line)
        elif json_lines:  # the same records as ECS or OTel, through the output thread
            maker = RecordMaker()
            lines = _Printer(
                output,
                lambda item: dumps(mapping(maker.event(item))),
                lambda count: dumps(mapping(maker.lost(count))),
            )
        else:
            lines = _Printer(output, as_line, lambda count: f"!! {count} events lost")
        #: --kind/--match/--container, when given: it counts the events it lets through.
        self.filter = (
            FilterHandler(lines, EventFilter(kinds=kinds, match=pattern, containers=containers))
            if kinds or pattern or containers
            else None
        )
        self.lines = self.filter or lines
        self.done = done
        self.error: BaseException | None = None

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        self.lines.on_process_event(item, param)

    def on_events_lost(self, count: int, param: Any) -> None:
        self.lines.on_events_lost(count, param)

    def on_error(self, error: BaseException, param: Any) -> None:
        self.error = error
        self.done.set()

    @property
    def matched(self) -> int | None:
        """Events that --kind/--match/--container let through; None when none was given."""
        return None if self.filter is None else self.filter.passed


class _Printer(CallbackHandler):
    """Events to ``output``, rendered there by ``render``; losses as ``render_lost``'s line."""

    def __init__(
        self, output: Output, render: Callable[[QueuedItem], str], render_lost: Callable[[int], str]
    ) -> None:
        output.render = render
        self.put_event = output.put_event
        self.put = output.put
        self.render_lost = render_lost

    def on_process_event(self, item: QueuedItem, param: Any) -> None:
        self.put_event(item)

    def on_events_lost(self, count: int, param: Any) -> None:
        self.put(self.render_lost(count))


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "watch",
        help="print process events live",
        description="Print process events live.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_format_option(p, text=True)
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument(
        "--kind",
        action="append",
        choices=[k.value for k in EventKind],
        help="only these kinds (repeatable); default: all",
    )
    arguments.add_match_and_duration(p, "image or command line")
    p.add_argument(
        "--container",
        action="append",
        type=arguments.container_id,
        metavar="ID",
        help="only processes in this container (repeatable): its id or the id's beginning, "
        "as docker/podman ps show it, or a systemd-nspawn machine's name",
    )
    p.add_argument(
        "--source",
        default="auto",
        help="kernel source: auto (default: ebpf when this process may load it, else "
        "connector, else the procobsrv service), ebpf, connector, service (Linux); "
        "driver (Windows)",
    )
    p.add_argument(
        "--socket",
        metavar="PATH",
        help="with --source service: the service's socket (default /run/procobsrv/events.sock)",
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
    if requested != "auto" or source is None:
        return ""
    if source.name == "service":
        return f" through the procobsrv service at {getattr(source, 'socket_path', '?')}"
    if source.name != "connector":
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


def reopener(reopen: Callable[[], None] | None) -> Callable[[], None] | None:
    """SIGHUP's action with ``--output``: open the path anew, keeping the old file if the new
    one cannot be opened (monitoring goes on either way)."""
    if reopen is None:
        return None

    def reopen_or_say_why() -> None:
        try:
            reopen()
        except MonitorError as exc:
            log.error("%s", exc)

    return reopen_or_say_why


def open_outputs(
    args: argparse.Namespace, done: threading.Event
) -> tuple[Output | None, Sink | None]:
    """Where the lines go: stdout, an appended file (both written by an :class:`Output`'s
    thread) or a sink (``--output nats://``)."""
    if args.output and args.output.startswith("nats://"):
        return None, output_from_args(args)
    if args.output:
        return Output.to_file(args.output, on_broken=done.set), None
    return Output(sys.stdout, on_broken=done.set), None


def source_from_args(args: argparse.Namespace) -> SourceChoice:
    """``--source``, or with ``--socket`` the service source at that path."""
    if args.socket is None:
        return str(args.source)
    if args.source != "service":
        raise MonitorError("--socket goes with --source service")
    from ..linux.service_source import ServiceSource  # Linux only: asked for by name

    return ServiceSource(socket_path=args.socket)


def run(args: argparse.Namespace) -> int:
    source = source_from_args(args)
    lines = line_format(args)
    done = threading.Event()
    output, sink = open_outputs(args, done)
    reopened = sink if sink is not None else output if args.output else None  # by SIGHUP
    reopen = reopener(reopened.reopen if reopened is not None else None)
    handler = ConsoleHandler(
        output,
        done,
        json_lines=lines != "text",
        kinds={EventKind(k) for k in args.kind} if args.kind else None,
        pattern=args.match,
        containers=args.container,
        sink=sink,
        mapping=MAPPINGS.get(lines, MAPPINGS["json"]),
    )
    scope = ApplicationScope.get_instance(handler)
    signals = Signals(done.set, reopen)
    with handling(signals):
        if output is not None and lines == "text":
            output.put(HEADER)
        try:
            realtime = current_platform().realtime_threads if args.realtime else None
            with realtime() if realtime else contextlib.nullcontext():
                scope.start_monitoring(source=source)  # its threads inherit the policy
            if output is not None:
                output.start()
            note = fallback_note(args.source, scope)
            print(f"procobsrv: watching{note}; Ctrl+C to stop", file=sys.stderr, flush=True)
            done.wait(args.duration)
        finally:
            signals.stopping = True  # SIGHUP from here on: no reopen of what is being closed
            if output is not None:
                output.stop_waiting()  # the stop must not wait for a reader that does not read
            scope.stop_monitoring()
            if output is not None:
                output.close(GRACE)
            if sink is not None:
                sink.close()  # delivers what is pending, so that the summary is final
    if output is not None and output.broken:
        return BROKEN_PIPE_STATUS  # quietly, as cat does under head
    stats = scope.stats()  # every event delivered, matching or not
    seen = ", ".join(f"{stats.delivered.get(k, 0)} {k.value}" for k in EventKind)
    unwritten = ""
    if output is not None and output.unwritten:
        why = "output failed" if output.error else "output blocked"
        unwritten = f", {output.unwritten} not written ({why})"
    counted = f"{stats.total} events ({seen})"
    if handler.matched is not None:  # say what was shown, of what was seen
        counted = f"{handler.matched} events matched, of {counted}"
    print(f"procobsrv: {counted}, {stats.lost} lost{unwritten}", file=sys.stderr)
    summary = sink.summary() if sink is not None else None
    if output is not None and output.path is not None:
        summary = f"{output.written} lines written to {output.path}"
    if summary:
        print(f"procobsrv: {summary}", file=sys.stderr)
    if handler.error is not None:
        raise MonitorError(f"monitoring stopped: {handler.error}") from handler.error
    if output is not None and output.error is not None:
        what = "the output" if output.path is None else f"the output file {output.path}"
        raise MonitorError(f"writing {what} failed: {output.error}") from output.error
    return 0
