"""Two checkouts of procobsrv against the same storms, runs alternating: is a change better?

Run as ``python -m benchmarks.compare OLD_SRC NEW_SRC [--contender procobsrv-ebpf] [--k 2]
[--total 4000] [--reps 3] [--interval 0]``, where OLD_SRC and NEW_SRC are ``src`` directories
(e.g. of ``git worktree add /tmp/base main``). Each repetition runs the contender on OLD,
then on NEW (the order swaps every repetition), so that the machine's load falls on both
alike. Prints one line per run and the medians: listener CPU per 10k events, wake-ups per
event of the thread that woke most (and per thread), latency p50/p99, losses.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from .harness import RunResult, run_one


def _run(src: str, contender: str, k: int, total: int, interval: float) -> RunResult:
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = src  # the listener imports procobsrv from here
    try:
        return run_one(contender, k, total, "spawn", interval)
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous


def _line(label: str, r: RunResult) -> str:
    cpu = (r.cpu_seconds or 0.0) / r.events * 1e4
    threads = " ".join(
        f"{n.removeprefix('procobsrv-')}={w:.3f}/{r.thread_cpu_us.get(n, 0):.1f}us"
        for n, w in sorted(r.wakeups.items())
    )
    lat = r.latency_ms
    p = f"p50 {lat['p50']:.2f} p99 {lat['p99']:.2f} ms" if lat else "no latency"
    return (
        f"{label:4} cpu/10k {cpu:.3f}s  wake/ev max {r.wakeups_max or 0:.3f} [{threads}]  "
        f"{p}  lost {r.lost} missing {r.missing} rss {r.peak_rss_mib or 0:.0f} MiB"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--contender", default="procobsrv-ebpf")
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--total", type=int, default=4000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--interval", type=float, default=0.0)
    args = p.parse_args(argv)
    runs: dict[str, list[RunResult]] = {"old": [], "new": []}
    for rep in range(args.reps):
        order = ("old", "new") if rep % 2 == 0 else ("new", "old")
        for label in order:
            src = args.old if label == "old" else args.new
            r = _run(src, args.contender, args.k, args.total, args.interval)
            runs[label].append(r)
            print(_line(label, r), flush=True)
    print(f"medians of {args.reps}, {args.contender}, K={args.k}, {args.total} processes:")
    for label, rs in runs.items():
        cpu = statistics.median((r.cpu_seconds or 0.0) / r.events * 1e4 for r in rs)
        woke = statistics.median(r.wakeups_max or 0.0 for r in rs)
        p99 = statistics.median(r.latency_ms.get("p99", float("nan")) for r in rs)
        p50 = statistics.median(r.latency_ms.get("p50", float("nan")) for r in rs)
        print(
            f"{label:4} cpu/10k {cpu:.3f}s  wake-ups/event/thread (max) {woke:.3f}  "
            f"latency p50 {p50:.2f} p99 {p99:.2f} ms  lost {sum(r.lost for r in rs)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
