"""Kernel cost per call of each eBPF hook: this tree's program against another tree's, in turns.

Run as root: ``python -m benchmarks.kernel_cost --other /path/to/other/checkout [--k 2]
[--total 4000] [--reps 3] [--consumer listener|none]``. Each run starts a process with the
procobsrv (program and user space) of one tree, runs a K-spawner storm of ``/bin/true``,
and reads ``run_time_ns / run_cnt`` of that process's programs (``harness.BpfStats``:
``kernel.bpf_stats_enabled=1`` and ``bpftool prog show``). The two trees alternate, so that
both meet the same machine; the medians per hook are printed, with the ratio this/other.

``--consumer listener`` (the default) is ``benchmarks.listener --source ebpf``: the figures
include the wake-ups of the consumer (about 10 us each on a VM), charged to whichever hook
wrote a record into an empty buffer, so they depend on how the pipeline batches. With
``--consumer none`` the process loads the program with a 64 MiB ring and never reads it:
after the first record nothing wakes anyone, and the figures are the hooks' own work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
from pathlib import Path
from statistics import median

from .harness import PY, ROOT, BpfStats, EbpfListener, ensure_tracefs, run_storm, wait_quiet

#: ``--consumer none``: the program loaded, its ring never read (until SIGTERM).
IDLE_LOADER = """
import os, signal, threading
from procobsrv.linux import EbpfSource
source = EbpfSource(ring_size=64 << 20, read_proc=False)
source.open()
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
print("ready", flush=True)
done.wait()
source.close()
with open(os.sys.argv[1], "w") as f:
    f.write("{}")
"""


class TreeListener(EbpfListener):
    """The eBPF listener (or, with ``consume=False``, IDLE_LOADER), importing procobsrv from
    ``src`` (a checkout's ``src``)."""

    def __init__(self, src: Path, consume: bool = True) -> None:
        self.src = src
        self.consume = consume
        super().__init__()

    def command(self) -> list[str]:
        if self.consume:
            return super().command()
        return [PY, "-c", IDLE_LOADER, self.out]

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.src), str(ROOT)])
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.wait_ready()


def measure(src: Path, k: int, total: int, consume: bool) -> dict[str, float]:
    """hook -> ns per call over one storm, with procobsrv from ``src``."""
    listener = TreeListener(src, consume)
    try:
        listener.start()
        assert listener.proc is not None
        with BpfStats(listener.proc.pid) as stats:
            stats.begin()
            run_storm(k, total)
            if consume:
                wait_quiet(listener.proc.pid)
            cost = stats.end()
        listener.stop()
    finally:
        listener.cleanup()
    return {hook: figures["ns_per_run"] for hook, figures in cost.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.kernel_cost", description=__doc__)
    p.add_argument("--other", type=Path, required=True, help="the checkout to compare with")
    p.add_argument("--k", type=int, default=2, help="spawner processes")
    p.add_argument("--total", type=int, default=4000, help="processes per storm")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--consumer", choices=("listener", "none"), default="listener")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    with contextlib.suppress(OSError):
        ensure_tracefs()
    trees = {"this": ROOT / "src", "other": args.other.resolve() / "src"}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for rep in range(args.reps):
        for name, src in trees.items():
            cost = measure(src, args.k, args.total, args.consumer == "listener")
            runs[name].append(cost)
            shown = " ".join(f"{hook} {ns:,.0f}" for hook, ns in cost.items())
            print(f"run {rep + 1} {name:5}: ns per call: {shown}", flush=True)
    medians = {
        name: {hook: median(r[hook] for r in rs if hook in r) for hook in rs[0]}
        for name, rs in runs.items()
    }
    print(
        f"medians of {args.reps} (K={args.k}, {args.total} processes, consumer "
        f"{args.consumer}), ns per call:"
    )
    for hook in medians["this"]:
        new, old = medians["this"][hook], medians["other"].get(hook)
        ratio = f" ({new / old:.2f}x)" if old else ""
        print(f"  {hook:8} this {new:7,.0f}  other {old or 0:7,.0f}{ratio}")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "medians": medians}, indent=1))


if __name__ == "__main__":
    main()
