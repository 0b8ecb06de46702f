"""The benchmark: every contender against the same storms, medians of several runs.

``python -m benchmarks.run`` (``make bench``) runs the full set (about 10 minutes) and writes
``benchmarks/results/latest.json``, ``benchmarks/results/chart.png`` and the results table in
``docs/performance.md``. ``--quick`` is a CI-sized run (2,000 processes, one repetition) that
writes ``benchmarks/results/quick.json`` only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from procobsrv.errors import MonitorError
from procobsrv.realtime import realtime_threads

from .harness import (
    CONTENDERS,
    KINDS,
    ROOT,
    SCRATCH,
    RunResult,
    run_one,
    run_storm,
)
from .replay import Recorder, save

RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "performance.md"
DOC_CHART = ROOT / "docs" / "performance.png"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def scenarios(args: argparse.Namespace) -> list[tuple[str, int, int, str]]:
    return [
        ("K=1", 1, args.total_k1, "spawn"),
        ("K=2", 2, args.total, "spawn"),
        ("K=4", 4, args.total, "spawn"),
        ("mixed K=2", 2, args.total_mixed, "mixed"),
    ]


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[RunResult], none_rate: float | None) -> dict[str, Any]:
    """Medians over repetitions; completeness is the worst run, losses are summed."""
    first = runs[0]
    rate = median([r.rate for r in runs])
    cpu = median([r.cpu_seconds / r.events * 1e4 for r in runs if r.cpu_seconds is not None])
    out: dict[str, Any] = {
        "contender": first.contender,
        "k": first.k,
        "mode": first.mode,
        "processes": first.processes,
        "events": first.events,
        "runs": len(runs),
        "rate": rate,
        "tax_pct": (100.0 * (1 - rate / none_rate)) if rate and none_rate else None,
        "cpu_s_per_10k": cpu,
        "peak_rss_mib": median([r.peak_rss_mib for r in runs if r.peak_rss_mib is not None]),
        "completeness_min": {
            k: min(c)
            if (c := [r.completeness[k] for r in runs if r.completeness[k] is not None])
            else None
            for k in KINDS
        },
        "missing": sum(r.missing for r in runs),
        "lost": sum(r.lost for r in runs),
        "overflow_reports": sum(r.overflow_reports for r in runs),
        "unaccounted": sum(r.unaccounted for r in runs),
        "wrong_exit_status": sum(r.wrong_exit_status for r in runs),
        "latency_ms": {
            q: median([r.latency_ms[q] for r in runs if r.latency_ms])
            for q in ("p50", "p99", "max")
        }
        if any(r.latency_ms for r in runs)
        else {},
    }
    return out


def replay_capacity(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Record a real storm's datagrams, then replay them through the pipeline on one core."""
    capture = os.path.join(SCRATCH or "/tmp", f"procobsrv-capture-{os.getpid()}.bin")
    with Recorder() as rec:
        run_storm(2, args.replay_processes)
    save(rec.datagrams, capture)
    cpu = max(os.sched_getaffinity(0))
    repeat = max(1, args.replay_events // max(1, len(rec.datagrams)))

    def one(*extra: str) -> dict[str, Any]:
        cmd = [sys.executable, "-m", "benchmarks.replay", capture, str(repeat), str(cpu), *extra]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    try:
        noop = []
        for i in range(args.reps):
            noop.append(one())
            log(f"  replay no-op handler #{i + 1}: {noop[-1]['events_per_s']:,.0f} events/s")
        slow = [one("50", str(limit)) for limit in (10_000, 100_000)]
        for s in slow:
            log(
                f"  replay slow handler (50 us/event), queue_limit {s['queue_limit']}: "
                f"peak RSS {s['rss_peak_mib']:.1f} MiB, {s['lost']} reported lost"
            )
    finally:
        os.unlink(capture)
    return {
        "cpu": cpu,
        "recorded_datagrams": len(rec.datagrams),
        "repeat": repeat,
        "events_per_s": median([r["events_per_s"] for r in noop]),
        "events_per_cpu_s": median([r["events_per_cpu_s"] for r in noop]),
        "noop_runs": noop,
        "slow_runs": slow,
    }


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    forkstat = subprocess.run(["forkstat", "-h"], capture_output=True, text=True).stdout
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "forkstat": forkstat.splitlines()[0] if forkstat else None,
        "loadavg_at_start": load,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def fmt(v: float | None, spec: str = ".0f", missing: str = "-") -> str:
    return missing if v is None else format(v, spec)


def table(summary: list[dict[str, Any]]) -> str:
    head = (
        "| storm | contender | procs/s | tax % | CPU s/10k ev | peak RSS MiB | fork % | exec % "
        "| exit % | lost | silent | lat p50/p99/max ms |"
    )
    rows = [head, "|" + "---|" * 12]
    for s in summary:
        c = s["completeness_min"]
        lat = s["latency_ms"]
        silent = s["unaccounted"] if s["contender"] != "none" else None
        rows.append(
            f"| {s['scenario']} | {s['contender']} | {fmt(s['rate'])} | {fmt(s['tax_pct'], '.1f')} "
            f"| {fmt(s['cpu_s_per_10k'], '.3f')} | {fmt(s['peak_rss_mib'], '.1f')} "
            + " ".join(f"| {fmt(c[k] if s['contender'] != 'none' else None, '.2f')}" for k in KINDS)
            + f" | {s['lost'] if s['contender'] != 'none' else '-'}"
            + (f" ({s['overflow_reports']} nobufs)" if s["overflow_reports"] else "")
            + f" | {fmt(silent, 'd')} "
            + (f"| {lat['p50']:.2f} / {lat['p99']:.2f} / {lat['max']:.1f} |" if lat else "| - |")
        )
    return "\n".join(rows)


def ratios(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """procobsrv's tax and CPU over forkstat's, per storm (below 1: procobsrv is cheaper)."""
    out = []
    by = {(s["scenario"], s["contender"]): s for s in summary}
    for scenario in dict.fromkeys(s["scenario"] for s in summary):
        fs = by.get((scenario, "forkstat"))
        for name in ("procobsrv-api", "procobsrv-watch"):
            s = by.get((scenario, name))
            if not s or not fs:
                continue
            out.append({
                "scenario": scenario,
                "contender": name,
                "tax_vs_forkstat": (s["tax_pct"] / fs["tax_pct"]) if fs["tax_pct"] else None,
                "tax_pct": s["tax_pct"],
                "forkstat_tax_pct": fs["tax_pct"],
                "cpu_vs_forkstat": s["cpu_s_per_10k"] / fs["cpu_s_per_10k"]
                if fs["cpu_s_per_10k"]
                else None,
            })  # fmt: skip
    return out


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    scen = list(dict.fromkeys(s["scenario"] for s in summary))
    names = [c for c in CONTENDERS]
    by = {(s["scenario"], s["contender"]): s for s in summary}
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    width = 0.16

    def bars(
        ax: Any, key: Callable[[dict[str, Any]], float | None], title: str, skip_none: bool
    ) -> None:
        shown = [n for n in names if not (skip_none and n == "none")]
        for i, n in enumerate(shown):
            vals = [key(by[(sc, n)]) if (sc, n) in by else None for sc in scen]
            xs = [j + (i - len(shown) / 2 + 0.5) * width for j in range(len(scen))]
            ax.bar(xs, [v or 0 for v in vals], width, label=n, color=f"C{names.index(n)}")
        ax.set_xticks(range(len(scen)), scen)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)

    bars(axes[0][0], lambda s: s["rate"], "storm throughput (processes/s, higher is better)", False)
    axes[0][0].legend(fontsize=8)
    bars(
        axes[0][1],
        lambda s: s["cpu_s_per_10k"],
        "monitor CPU s per 10,000 events (lower is better)",
        True,
    )
    ax = axes[1][0]
    scen4 = "K=4"
    shown = [n for n in names if n != "none"]
    for i, kind in enumerate(KINDS):
        vals = [by[(scen4, n)]["completeness_min"][kind] or 0 for n in shown]
        ax.bar([j + (i - 1) * 0.25 for j in range(len(shown))], vals, 0.25, label=kind)
    ax.set_xticks(range(len(shown)), shown, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_title("K=4 storm: events captured (% of ground truth, worst run)")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    lat = result["latency"]
    labels, p50, p99 = [], [], []
    for label, key in (
        ("idle", "idle"),
        ("K=4 storm", "storm_k4"),
        ("idle\n--realtime", "idle_realtime"),
        ("K=4 storm\n--realtime", "storm_k4_realtime"),
    ):
        if lat.get(key):
            labels.append(label)
            p50.append(lat[key]["p50"])
            p99.append(lat[key]["p99"])
    ax.bar([x - 0.2 for x in range(len(labels))], p50, 0.4, label="p50")
    ax.bar([x + 0.2 for x in range(len(labels))], p99, 0.4, label="p99")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yscale("log")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")  # the idle target
    ax.set_title("procobsrv latency, kernel timestamp -> handler (ms, log)")
    ax.legend(fontsize=8)
    cap = result.get("replay") or {}
    if cap:
        ax.text(0.02, 0.95, f"pipeline replay, one core: {cap['events_per_s']:,.0f} events/s",
                transform=ax.transAxes, fontsize=9, va="top")  # fmt: skip
    fig.suptitle(
        f"procobsrv benchmark ({result['machine']['cpus']} CPUs, {result['machine']['kernel']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def update_doc(text: str) -> None:
    if not DOC.exists():
        return
    doc = DOC.read_text()
    if START in doc and END in doc:
        before, rest = doc.split(START, 1)
        _, after = rest.split(END, 1)
        DOC.write_text(f"{before}{START}\n{text}\n{END}{after}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="CI-sized: 2,000 processes, 1 run")
    p.add_argument("--total", type=int, help="processes per K=2/K=4 storm (default 20000)")
    p.add_argument("--reps", type=int, help="repetitions (default 3)")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    args = p.parse_args(argv)
    args.total = args.total or (2000 if args.quick else 20_000)
    args.reps = args.reps or (1 if args.quick else 3)
    args.total_k1 = args.total // 2
    args.total_mixed = max(400, args.total * 3 // 10)
    args.replay_processes = args.total // 2
    args.replay_events = 100_000 if args.quick else 400_000
    contenders = args.contenders.split(",")
    if "forkstat" in contenders and shutil.which("forkstat") is None:
        print("forkstat is not installed (apt-get install forkstat); skipping it", file=sys.stderr)
        contenders.remove("forkstat")

    def log(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.monotonic()
    info = machine()
    log(f"machine: {info}")
    runs: dict[tuple[str, str], list[RunResult]] = {}
    idle: list[RunResult] = []
    idle_rt: list[RunResult] = []
    storm_rt: list[RunResult] = []
    for rep in range(args.reps):
        for label, k, total, mode in scenarios(args):
            for name in contenders:
                r = run_one(name, k, total, mode)
                runs.setdefault((label, name), []).append(r)
                log(
                    f"[{time.monotonic() - t0:5.0f}s] run {rep + 1} {label:9} {name:16} "
                    f"{r.rate:6.0f} procs/s cpu {r.cpu_seconds or 0:5.2f}s missing {r.missing} "
                    f"lost {r.lost} silent {r.unaccounted}"
                )
        # Idle latency: one process every 20 ms, nothing else of ours running. Then the same
        # and the K=4 storm with the monitoring threads SCHED_FIFO (`watch --realtime`).
        idle_n = 100 if args.quick else 300
        idle.append(run_one("procobsrv-api", 1, idle_n, "spawn", 0.02))
        log(f"[{time.monotonic() - t0:5.0f}s] run {rep + 1} idle latency {idle[-1].latency_ms}")
        if realtime_allowed():
            idle_rt.append(run_one("procobsrv-api-rt", 1, idle_n, "spawn", 0.02))
            storm_rt.append(run_one("procobsrv-api-rt", 4, args.total))
            log(
                f"[{time.monotonic() - t0:5.0f}s] run {rep + 1} realtime latency idle "
                f"{idle_rt[-1].latency_ms} K=4 {storm_rt[-1].latency_ms} "
                f"missing {storm_rt[-1].missing}"
            )
    summary = []
    for (label, _name), rs in runs.items():
        none = runs.get((label, "none"))
        s = summarize(rs, median([r.rate for r in none]) if none else None)
        s["scenario"] = label
        summary.append(s)
    log(f"[{time.monotonic() - t0:5.0f}s] pipeline replay")
    replay = replay_capacity(args, log)
    k4 = runs.get(("K=4", "procobsrv-api"), [])
    result: dict[str, Any] = {
        "command": "python -m benchmarks.run" + (" --quick" if args.quick else ""),
        "args": {k: v for k, v in vars(args).items()},
        "machine": info,
        "seconds": time.monotonic() - t0,
        "summary": summary,
        "ratios_vs_forkstat": ratios(summary),
        "latency": {
            "idle": {q: median([r.latency_ms[q] for r in idle]) for q in ("p50", "p99", "max")},
            "storm_k4": summary_lat(k4),
            "idle_realtime": summary_lat(idle_rt),
            "storm_k4_realtime": summary_lat(storm_rt),
        },
        "replay": replay,
        "runs": {f"{a} / {b}": [r.as_dict() for r in rs] for (a, b), rs in runs.items()},
        "idle_runs": [r.as_dict() for r in idle],
        "realtime_runs": [r.as_dict() for r in idle_rt + storm_rt],
    }
    text = report(result)
    print()
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "quick" if args.quick else "latest"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    if not args.quick:
        chart(result, RESULTS / "chart.png")
        shutil.copyfile(RESULTS / "chart.png", DOC_CHART)
        update_doc(text)
    print(f"\nwrote {RESULTS / (name + '.json')} in {time.monotonic() - t0:.0f} s")
    return 0


def realtime_allowed() -> bool:
    """Whether this user may use SCHED_FIFO (root, CAP_SYS_NICE or RLIMIT_RTPRIO)."""
    try:
        with realtime_threads():
            return True
    except MonitorError:
        return False


def summary_lat(runs: list[RunResult]) -> dict[str, float | None]:
    if not runs:
        return {}
    return {
        q: median([r.latency_ms[q] for r in runs if r.latency_ms]) for q in ("p50", "p99", "max")
    }


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Command: `{result['command']}` ({result['args']['reps']} runs each, medians; "
        f"completeness = worst run; lost/silent = summed over runs)",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, Linux "
        f"{m['kernel']}, Python {m['python']}, {m['forkstat']}; load average at start "
        f"{' '.join(m['loadavg_at_start'])}; {m['date']}",
        "",
        table(result["summary"]),
        "",
        "Ratios to forkstat, same run (below 1.00: procobsrv costs less):",
        "",
        "| storm | contender | tax % (forkstat) | tax ratio | CPU ratio |",
        "|---|---|---|---|---|",
    ]
    for r in result["ratios_vs_forkstat"]:
        lines.append(
            f"| {r['scenario']} | {r['contender']} | {fmt(r['tax_pct'], '.1f')} "
            f"({fmt(r['forkstat_tax_pct'], '.1f')}) | {fmt(r['tax_vs_forkstat'], '.2f')} "
            f"| {fmt(r['cpu_vs_forkstat'], '.2f')} |"
        )
    lat = result["latency"]
    lines += ["", "procobsrv latency, kernel timestamp -> handler call (ms):", ""]
    lines += ["| when | p50 | p99 | max |", "|---|---|---|---|"]
    for label, key in (
        ("idle (1 process / 20 ms)", "idle"),
        ("K=4 storm", "storm_k4"),
        ("idle, `--realtime` (SCHED_FIFO)", "idle_realtime"),
        ("K=4 storm, `--realtime`", "storm_k4_realtime"),
    ):
        v = lat.get(key) or {}
        if v:
            lines.append(
                f"| {label} | {fmt(v['p50'], '.3f')} | {fmt(v['p99'], '.3f')} "
                f"| {fmt(v['max'], '.2f')} |"
            )
    cap = result["replay"]
    lines += [
        "",
        f"Pipeline replay (recorded datagrams -> Decoder -> ConnectorSource items, read_proc=False "
        f"-> QueueContainer -> RetrievalThread -> handler; pinned to CPU {cap['cpu']}; "
        f"{cap['recorded_datagrams']:,} datagrams x {cap['repeat']}):",
        "",
        f"- no-op handler: {cap['events_per_s']:,.0f} events/s wall (median), "
        f"{cap['events_per_cpu_s']:,.0f} events per CPU-second",
    ]
    for s in cap["slow_runs"]:
        lines.append(
            f"- slow handler (50 us sleep per event), queue_limit {s['queue_limit']:,}: "
            f"{s['delivered']:,} delivered, {s['lost']:,} reported lost (queue overflow), "
            f"RSS {s['rss_before_mib']:.1f} -> peak {s['rss_peak_mib']:.1f} MiB"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
