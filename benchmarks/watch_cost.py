"""What ``watch --json`` and ``watch --output FILE`` cost over the API listener, and how two
checkouts compare: the same K=2 storm, contenders alternating in one run, medians.

Each contender runs in a process of its own (the harness's contenders): its whole CPU time
(every thread: monitor, retrieval, delivery, the output's writer) from just before the storm
until it has caught up, per 10,000 events *it saw*: on a machine shared with other jobs the
contenders also see the others' processes, at random, and dividing by the storm's events
would make those runs look dear. The listener is ``benchmarks.listener`` (a handler that
appends one tuple per event).

Run: ``.venv/bin/python -m benchmarks.watch_cost [--total 4000] [--reps 5] [--source ebpf]
[--base [LABEL=]DIR ...]``. With ``--base DIR`` (the ``src`` directory of another checkout,
e.g. one made with ``git archive main src | tar -x -C /tmp/base``) each watch contender also
runs on that code, alternating with this checkout's: ``old`` (or LABEL) and ``new``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager

from .harness import (
    CONTENDER_TYPES,
    EbpfListener,
    EbpfWatch,
    Observed,
    cpu_seconds,
    run_storm,
    wait_quiet,
)


class EbpfWatchFile(EbpfWatch):
    """``procobsrv watch --output FILE --source ebpf`` (the file on tmpfs, stdout unused)."""

    name = "procobsrv-ebpf-watch-file"

    def command(self) -> list[str]:
        return [*super().command()[:-3], "--output", self.out, "--source", self.source]

    def observed(self) -> Observed:
        return super().observed()  # the same JSON lines, read from self.out


class ConnectorWatchFile(EbpfWatchFile):
    name = "procobsrv-watch-file"
    source = "connector"
    bpf = False


CONTENDER_TYPES.update({c.name: c for c in (EbpfWatchFile, ConnectorWatchFile)})


def cpu_per_10k_seen(name: str, total: int) -> tuple[float, int]:
    """CPU seconds per 10,000 events seen by contender ``name`` during a K=2 storm, and the
    events it saw."""
    contender = CONTENDER_TYPES[name]()
    try:
        contender.start()
        assert contender.proc is not None
        cpu0 = cpu_seconds(contender.proc.pid)
        run_storm(2, total)
        wait_quiet(contender.proc.pid)
        cpu = cpu_seconds(contender.proc.pid) - cpu0
        contender.stop()
        seen = seen_events(contender.out)
    finally:
        contender.cleanup()
    return cpu / seen * 1e4, seen


def seen_events(out: str) -> int:
    """Events in a contender's output: the listener's JSON (``{"events": [...], ...}``), or
    watch's lines (loss records are not events)."""
    with open(out) as f:
        text = f.read()
    if text.startswith('{"events"'):
        return len(json.loads(text)["events"])
    return sum(1 for line in text.splitlines() if '"kind":"lost"' not in line)


@contextmanager
def code_from(src: str | None) -> Iterator[None]:
    """Contenders started in the block import procobsrv from ``src`` (None: this checkout)."""
    before = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = src
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.watch_cost", description=__doc__)
    p.add_argument("--total", type=int, default=4000, help="processes per K=2 storm")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--source", choices=("ebpf", "connector"), default="ebpf")
    p.add_argument(
        "--base",
        action="append",
        default=[],
        metavar="[LABEL=]DIR",
        help="src directory of other code to compare with (repeatable; label default: old)",
    )
    args = p.parse_args()
    ebpf = args.source == "ebpf"
    api = EbpfListener.name if ebpf else "procobsrv-api"
    watches = (
        (EbpfWatch.name, EbpfWatchFile.name)
        if ebpf
        else ("procobsrv-watch", "procobsrv-watch-file")
    )
    bases = [b.split("=", 1) if "=" in b else ("old", b) for b in args.base]
    plan: list[tuple[str, str, str | None]] = [("api", api, None)]
    for name in watches:
        output = "json" if name == watches[0] else "file"
        plan += [(f"{output} {label}", name, src) for label, src in bases]
        plan.append((f"{output} new" if bases else output, name, None))
    cpu: dict[str, list[float]] = {label: [] for label, _n, _s in plan}
    for rep in range(args.reps):
        for label, name, src in plan:
            with code_from(src):
                per_10k, seen = cpu_per_10k_seen(name, args.total)
            cpu[label].append(per_10k)
            print(f"run {rep + 1} {label:9} cpu/10k seen {per_10k:.3f} s ({seen} seen)", flush=True)
    medians = {label: statistics.median(v) for label, v in cpu.items()}
    print(f"\nK=2 storm of {args.total} processes, {args.source}, median of {args.reps} runs")
    for label, value in medians.items():
        print(f"{label:9} {value:.3f} s per 10k events  {value / medians['api']:.2f}x the API")
    print(json.dumps({"cpu_s_per_10k": medians, "runs": cpu}))


if __name__ == "__main__":
    main()
