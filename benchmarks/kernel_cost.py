"""Kernel cost per call of each eBPF hook: this tree's program against another tree's, in turns.

Run as root: ``python -m benchmarks.kernel_cost [--other /path/to/other/checkout]
[--older-exit] [--k 2] [--total 4000] [--reps 3] [--consumer listener|none]``. Each run
starts a process with the procobsrv (program and user space) of one tree, runs a K-spawner
storm of ``/bin/true``, and reads ``run_time_ns / run_cnt`` of that process's programs
(``harness.BpfStats``: ``kernel.bpf_stats_enabled=1`` and ``bpftool prog show``). The trees
alternate, so that all meet the same machine; the medians per hook are printed, with the
ratio to the other tree's.

``--older-exit`` also runs this tree with the exit path of kernels before 6.16 (as
``this-older``): their sched_process_exit passes no ``group_dead``, so ``exit_group_dead``
is 0 and on_exit reads ``signal->live`` and inserts each ended process into an LRU hash
(``bpfprog.exit_passes_group_dead`` answers False in that process, as
tests/linux/test_choice.py and tests/linux/test_ebpf_hostile.py make it). On a 6.16+ kernel
``this`` is the group_dead path; on an older one both are the older path.

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


#: Ahead of the listener or IDLE_LOADER for ``--older-exit``: the kernel said to pass no
#: group_dead, so the program is loaded with the older kernels' exit path.
OLDER_EXIT = """
from procobsrv.linux import bpfprog
bpfprog.exit_passes_group_dead = lambda lib: False
"""

#: The listener (``benchmarks.listener``) run as a script after OLDER_EXIT.
LISTENER = """
import runpy
runpy.run_module("benchmarks.listener", run_name="__main__", alter_sys=True)
"""


class TreeListener(EbpfListener):
    """The eBPF listener (or, with ``consume=False``, IDLE_LOADER), importing procobsrv from
    ``src`` (a checkout's ``src``); with ``older_exit``, on the older kernels' exit path."""

    def __init__(self, src: Path, consume: bool = True, older_exit: bool = False) -> None:
        self.src = src
        self.consume = consume
        self.older_exit = older_exit
        super().__init__()

    def command(self) -> list[str]:
        if not self.older_exit:
            return super().command() if self.consume else [PY, "-c", IDLE_LOADER, self.out]
        if self.consume:
            return [PY, "-c", OLDER_EXIT + LISTENER, self.out, "--source", self.source]
        return [PY, "-c", OLDER_EXIT + IDLE_LOADER, self.out]

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.src), str(ROOT)])
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.wait_ready()


def measure(
    src: Path, k: int, total: int, consume: bool, older_exit: bool = False
) -> dict[str, float]:
    """hook -> ns per call over one storm, with procobsrv from ``src``."""
    listener = TreeListener(src, consume, older_exit)
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
    p.add_argument("--other", type=Path, help="the checkout to compare with")
    p.add_argument(
        "--older-exit",
        action="store_true",
        help="also this tree with the exit path of kernels before 6.16 (exit_group_dead 0)",
    )
    p.add_argument("--k", type=int, default=2, help="spawner processes")
    p.add_argument("--total", type=int, default=4000, help="processes per storm")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--consumer", choices=("listener", "none"), default="listener")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    with contextlib.suppress(OSError):
        ensure_tracefs()
    # name -> (src, older exit path)
    trees = {"this": (ROOT / "src", False)}
    if args.older_exit:
        trees["this-older"] = (ROOT / "src", True)
    if args.other is not None:
        trees["other"] = (args.other.resolve() / "src", False)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for rep in range(args.reps):
        for name, (src, older_exit) in trees.items():
            cost = measure(src, args.k, args.total, args.consumer == "listener", older_exit)
            runs[name].append(cost)
            shown = " ".join(f"{hook} {ns:,.0f}" for hook, ns in cost.items())
            print(f"run {rep + 1} {name:10}: ns per call: {shown}", flush=True)
    medians = {
        name: {hook: median(r[hook] for r in rs if hook in r) for hook in rs[0]}
        for name, rs in runs.items()
    }
    print(
        f"medians of {args.reps} (K={args.k}, {args.total} processes, consumer "
        f"{args.consumer}), ns per call:"
    )
    other = medians.get("other", {})
    print("  " + " " * 8 + "".join(f"{name:>18}" for name in medians))
    for hook in medians["this"]:
        cells = ""
        for name, figures in medians.items():
            ns, old = figures.get(hook, 0.0), other.get(hook)
            ratio = f" ({ns / old:.2f}x)" if old and name != "other" else ""
            cells += f"{f'{ns:,.0f}{ratio}':>18}"
        print(f"  {hook:8}{cells}")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "medians": medians}, indent=1))


if __name__ == "__main__":
    main()
