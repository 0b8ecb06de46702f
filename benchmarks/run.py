"""The benchmark: every contender against the same storms, medians of several runs.

``python -m benchmarks.run`` (``make bench``) runs the full set (about 10 minutes) and writes
``benchmarks/results/latest.json``, the figures (``docs/images/performance-*.png``) and the
results between the markers of ``docs/performance.md``. ``--quick`` is a CI-sized run (2,000
processes, one repetition) that writes ``benchmarks/results/quick.json`` only. ``--redraw``
runs nothing: it draws the figures and rewrites the results from the saved
``latest.json`` (after a change to the drawing or the report, or a merge of a new run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from procobsrv.errors import MonitorError
from procobsrv.linux.realtime import realtime_threads

from . import figures
from .harness import (
    CONTENDERS,
    KINDS,
    PY,
    ROOT,
    SCRATCH,
    RunResult,
    Unavailable,
    run_one,
    run_storm,
)
from .replay import Recorder, save

RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "performance.md"
#: The figures the page shows (benchmarks/figures.py draws them).
DOC_IMAGES = ROOT / "docs" / "images"
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
        # The thread that woke most often, per event (voluntary context switches).
        "wakeups_per_event": median([r.wakeups_max for r in runs if r.wakeups_max is not None]),
        "wakeups_by_thread": {
            name: median([r.wakeups[name] for r in runs if name in r.wakeups])
            for name in dict.fromkeys(n for r in runs for n in r.wakeups)
        },
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
        "execed": first.execed,
        "exact_min": {
            k: min(c) if (c := [r.exact[k] for r in runs if r.exact.get(k) is not None]) else None
            for k in ("argv", "image")
        },
        "kernel_ns_per_run": {
            hook: median([r.kernel_ns[hook]["ns_per_run"] for r in runs if hook in r.kernel_ns])
            for hook in dict.fromkeys(h for r in runs for h in r.kernel_ns)
        },
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
    execsnoop = subprocess.run(
        ["dpkg-query", "-W", "-f=libbpf-tools ${Version}", "libbpf-tools"],
        capture_output=True,
        text=True,
    ).stdout
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "forkstat": forkstat.splitlines()[0] if forkstat else None,
        "execsnoop": f"execsnoop ({execsnoop})" if execsnoop else "execsnoop: not installed",
        "loadavg_at_start": load,
        "commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def fmt(v: float | None, spec: str = ".0f", missing: str = "-") -> str:
    return missing if v is None else format(v, spec)


def table(summary: list[dict[str, Any]]) -> str:
    """Two tables (so that each fits a page's column): what each contender cost, then what
    it saw."""
    cost = [
        "| storm | contender | procs/s | tax % | CPU s/10k ev | wake-ups/ev/thread "
        "| peak RSS MiB | lat p50/p99/max ms |",
        "|" + "---|" * 8,
    ]
    seen = [
        "| storm | contender | fork % | exec % | exit % | argv % | image % | lost | silent |",
        "|" + "---|" * 9,
    ]
    for s in summary:
        c, x = s["completeness_min"], s["exact_min"]
        lat = s["latency_ms"]
        cost.append(
            f"| {s['scenario']} | {s['contender']} | {fmt(s['rate'])} | {fmt(s['tax_pct'], '.1f')} "
            f"| {fmt(s['cpu_s_per_10k'], '.3f')} | {fmt(s.get('wakeups_per_event'), '.3f')} "
            f"| {fmt(s['peak_rss_mib'], '.1f')} "
            + (f"| {lat['p50']:.2f} / {lat['p99']:.2f} / {lat['max']:.1f} |" if lat else "| - |")
        )
        if s["contender"] == "none":
            continue
        seen.append(
            f"| {s['scenario']} | {s['contender']} "
            + " ".join(f"| {fmt(c[k], '.2f')}" for k in KINDS)
            + " "
            + " ".join(f"| {fmt(x.get(k), '.2f')}" for k in ("argv", "image"))
            + f" | {s['lost']}"
            + (f" ({s['overflow_reports']} nobufs)" if s["overflow_reports"] else "")
            + f" | {fmt(s['unaccounted'], 'd')} |"
        )
    return "\n".join(
        [
            "What each contender cost:",
            "",
            *cost,
            "",
            "What each contender saw (completeness per kind, worst run):",
            "",
            *seen,
        ]
    )


#: The contenders compared with forkstat (tax and CPU ratios).
PROCOBSRV = ("procobsrv-api", "procobsrv-watch", "procobsrv-ebpf", "procobsrv-ebpf-watch")


def ratios(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """procobsrv's tax and CPU over forkstat's, per storm (below 1: procobsrv is cheaper)."""
    out = []
    by = {(s["scenario"], s["contender"]): s for s in summary}
    for scenario in dict.fromkeys(s["scenario"] for s in summary):
        fs = by.get((scenario, "forkstat"))
        es = by.get((scenario, "execsnoop")) or {}
        for name in PROCOBSRV:
            s = by.get((scenario, name))
            if not s or not fs:
                continue
            out.append(
                {
                    "scenario": scenario,
                    "contender": name,
                    "tax_vs_forkstat": (s["tax_pct"] / fs["tax_pct"]) if fs["tax_pct"] else None,
                    "tax_pct": s["tax_pct"],
                    "forkstat_tax_pct": fs["tax_pct"],
                    "cpu_vs_forkstat": s["cpu_s_per_10k"] / fs["cpu_s_per_10k"]
                    if fs["cpu_s_per_10k"] and s["cpu_s_per_10k"] is not None
                    else None,
                    # Same storms, same denominator (the storm's events, all kinds).
                    "cpu_vs_execsnoop": s["cpu_s_per_10k"] / es["cpu_s_per_10k"]
                    if es.get("cpu_s_per_10k") and s["cpu_s_per_10k"] is not None
                    else None,
                }
            )
    return out


#: Latency runs: result key, label.
LATENCIES = (
    ("idle", "idle, connector (1 process / 20 ms)"),
    ("storm_k4", "K=4 storm, connector"),
    ("idle_realtime", "idle, connector, `--realtime` (SCHED_FIFO)"),
    ("storm_k4_realtime", "K=4 storm, connector, `--realtime`"),
    ("idle_ebpf", "idle, eBPF (1 process / 20 ms)"),
    ("storm_k4_ebpf", "K=4 storm, eBPF"),
)


def rescored(result: dict[str, Any]) -> dict[str, Any]:
    """A saved run with its ratios and targets' verdicts computed again by this code from its
    summary (a run saved by older code may lack some)."""
    result = {**result, "ratios_vs_forkstat": ratios(result["summary"])}
    result["targets"] = targets(result)
    return result


def redraw(saved: Path) -> None:
    """Figures and the page's results from a saved run, with this code's report."""
    result = rescored(json.loads(saved.read_text()))
    for path in figures.draw(result, DOC_IMAGES, LATENCIES):
        print(f"drew {path}")
    update_doc(report(result))
    print(f"rewrote the results in {DOC}")


def update_doc(text: str) -> None:
    if not DOC.exists():
        return
    doc = DOC.read_text()
    if START in doc and END in doc:
        before, rest = doc.split(START, 1)
        _, after = rest.split(END, 1)
        DOC.write_text(f"{before}{START}\n{text}\n{END}{after}")


def queued_memory() -> dict[str, Any]:
    """100,000 many-argument execs against a stalled handler (``benchmarks.memory``)."""
    proc = subprocess.run(
        [PY, "-m", "benchmarks.memory"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def opening_times(n: int) -> dict[str, Any]:
    """Open + close each Linux source n times in a fresh process (``benchmarks.opening``)."""
    out = {}
    for name in ("connector", "ebpf"):
        cmd = [PY, "-m", "benchmarks.opening", name, str(n)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        lines = proc.stdout.strip().splitlines()
        out[name] = json.loads(lines[-1]) if lines else {"unavailable": proc.stderr.strip()}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="CI-sized: 2,000 processes, 1 run")
    p.add_argument("--total", type=int, help="processes per K=2/K=4 storm (default 20000)")
    p.add_argument("--reps", type=int, help="repetitions (default 3)")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument(
        "--redraw",
        action="store_true",
        help="run nothing: figures and docs/performance.md's results from latest.json",
    )
    args = p.parse_args(argv)
    if args.redraw:
        redraw(RESULTS / "latest.json")
        return 0
    args.total = args.total or (2000 if args.quick else 20_000)
    args.reps = args.reps or (1 if args.quick else 3)
    args.total_k1 = args.total // 2
    args.total_mixed = max(400, args.total * 3 // 10)
    args.replay_processes = args.total // 2
    args.replay_events = 100_000 if args.quick else 400_000
    contenders = args.contenders.split(",")
    skipped: dict[str, str] = {}

    def log(msg: str) -> None:
        print(msg, flush=True)

    def attempt(
        name: str, k: int, total: int, mode: str = "spawn", interval: float = 0.0
    ) -> RunResult | None:
        """run_one, or None (and the contender dropped, with a note) when it cannot run."""
        try:
            return run_one(name, k, total, mode, interval)
        except Unavailable as exc:
            log(f"note: skipping {name}: {exc}")
            skipped[name] = str(exc)
            if name in contenders:
                contenders.remove(name)
            return None

    t0 = time.monotonic()
    info = machine()
    log(f"machine: {info}")
    opening = opening_times(10)
    log(f"opening a source (ms): {opening}")
    runs: dict[tuple[str, str], list[RunResult]] = {}
    latency_runs: dict[str, list[RunResult]] = {key: [] for key, _label in LATENCIES}
    for rep in range(args.reps):
        for label, k, total, mode in scenarios(args):
            for name in list(contenders):
                r = attempt(name, k, total, mode)
                if r is None:
                    continue
                runs.setdefault((label, name), []).append(r)
                log(
                    f"[{time.monotonic() - t0:5.0f}s] run {rep + 1} {label:9} {name:20} "
                    f"{r.rate:6.0f} procs/s cpu {r.cpu_seconds or 0:5.2f}s missing {r.missing} "
                    f"lost {r.lost} silent {r.unaccounted} argv {r.exact.get('argv')} "
                    f"image {r.exact.get('image')}"
                    + (
                        f" kernel ns/run {r.kernel_ns['all']['ns_per_run']:.0f}"
                        if r.kernel_ns
                        else ""
                    )
                )
        # Idle latency: one process every 20 ms, nothing else of ours running. Then the same
        # and the K=4 storm with the monitoring threads SCHED_FIFO (`watch --realtime`), and
        # the eBPF source idle (its K=4 storm latency comes from the storm runs).
        idle_n = 100 if args.quick else 300
        plan = [("idle", "procobsrv-api", 1, idle_n, 0.02)]
        if realtime_allowed():
            plan += [
                ("idle_realtime", "procobsrv-api-rt", 1, idle_n, 0.02),
                ("storm_k4_realtime", "procobsrv-api-rt", 4, args.total, 0.0),
            ]
        if "procobsrv-ebpf" in contenders:
            plan.append(("idle_ebpf", "procobsrv-ebpf", 1, idle_n, 0.02))
        for key, name, k, total, interval in plan:
            r = attempt(name, k, total, "spawn", interval)
            if r is not None:
                latency_runs[key].append(r)
                log(f"[{time.monotonic() - t0:5.0f}s] run {rep + 1} latency {key} {r.latency_ms}")
    latency_runs["storm_k4"] = runs.get(("K=4", "procobsrv-api"), [])
    latency_runs["storm_k4_ebpf"] = runs.get(("K=4", "procobsrv-ebpf"), [])
    summary = []
    for (label, _name), rs in runs.items():
        none = runs.get((label, "none"))
        s = summarize(rs, median([r.rate for r in none]) if none else None)
        s["scenario"] = label
        summary.append(s)
    log(f"[{time.monotonic() - t0:5.0f}s] pipeline replay")
    replay = replay_capacity(args, log)
    memory = queued_memory()
    log(f"[{time.monotonic() - t0:5.0f}s] memory with a stalled handler: {memory}")
    result: dict[str, Any] = {
        "command": "python -m benchmarks.run" + (" --quick" if args.quick else ""),
        "args": {k: v for k, v in vars(args).items()},
        "machine": info,
        "seconds": time.monotonic() - t0,
        "skipped": skipped,
        "summary": summary,
        "ratios_vs_forkstat": ratios(summary),
        "latency": {key: summary_lat(rs) for key, rs in latency_runs.items()},
        "opening_ms": opening,
        "replay": replay,
        "memory": memory,
        "runs": {f"{a} / {b}": [r.as_dict() for r in rs] for (a, b), rs in runs.items()},
        "latency_runs": {key: [r.as_dict() for r in rs] for key, rs in latency_runs.items()},
    }
    result["targets"] = targets(result)
    text = report(result)
    print()
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "quick" if args.quick else "latest"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    if not args.quick:
        figures.draw(result, DOC_IMAGES, LATENCIES)
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


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target (the connector pipeline's and the eBPF source's) against this run's
    figures: measured + verdict."""
    by = {(s["scenario"], s["contender"]): s for s in result["summary"]}
    scen = list(dict.fromkeys(s["scenario"] for s in result["summary"]))
    rat = {(r["scenario"], r["contender"]): r for r in result["ratios_vs_forkstat"]}
    rows: list[dict[str, Any]] = []
    Pairs = list[tuple[str, Any]]

    def row(
        target: str, pairs: Pairs, spec: str, unit: str, ok: Callable[[str, Any], bool]
    ) -> None:
        """One target: its value per storm, met when ok(storm, value) holds for every one."""
        measured = ", ".join(f"{sc} {fmt(v, spec)}" for sc, v in pairs) + unit if pairs else "-"
        met = all(v is not None and ok(sc, v) for sc, v in pairs) if pairs else None
        verdict = "not measured" if met is None else ("met" if met else "**not met**")
        rows.append({"target": target, "measured": measured, "verdict": verdict})

    def each(name: str, value: Callable[[dict[str, Any]], Any]) -> Pairs:
        return [(sc, value(by[(sc, name)])) for sc in scen if (sc, name) in by]

    def vs_forkstat(name: str, key: str) -> Pairs:
        return [(sc, r[key]) for (sc, n), r in rat.items() if n == name]

    ebpf = "procobsrv-ebpf"
    for name in ("procobsrv-api", ebpf):
        row(
            f"{name}: no silent loss (every miss counted)",
            each(name, lambda s: s["unaccounted"]),
            "d",
            " silent",
            lambda sc, v: v == 0,
        )
    for key, label in (("argv", "exact command line"), ("image", "absolute image")):
        row(
            f"eBPF: {label} for 100 % of processes (>= 99.9 % at K=4)",
            each(ebpf, lambda s, key=key: s["exact_min"].get(key)),
            ".2f",
            " %",
            lambda sc, v: v >= (99.9 if sc == "K=4" else 100.0),
        )
    row(
        "eBPF: forks, execs, exits 100 %",
        each(ebpf, lambda s: min(v for v in s["completeness_min"].values() if v is not None)),
        ".2f",
        " % (worst kind)",
        lambda sc, v: v == 100.0,
    )
    for name, limit in (("procobsrv-api", 1.0), (ebpf, 0.3)):
        row(
            f"{name}: listener CPU per 10k events <= {limit}x forkstat's",
            vs_forkstat(name, "cpu_vs_forkstat"),
            ".2f",
            "x",
            lambda sc, v, lim=limit: v <= lim,
        )
        if name == ebpf:
            row(
                f"{name}: listener CPU per 10k events <= 1.5x execsnoop's",
                [(sc, v) for sc, v in vs_forkstat(name, "cpu_vs_execsnoop") if v is not None],
                ".2f",
                "x",
                lambda sc, v: v <= 1.5,
            )
            row(
                f"{name}: wake-ups per event per thread <= 0.05 in the K=2 storm",
                [
                    (sc, v)
                    for sc, v in each(name, lambda s: s.get("wakeups_per_event"))
                    if sc == "K=2"
                ],
                ".3f",
                " (the thread that woke most)",
                lambda sc, v: v <= 0.05,
            )
        tax = [
            (sc, r["tax_pct"] - r["forkstat_tax_pct"]) for (sc, n), r in rat.items() if n == name
        ]
        row(
            f"{name}: storm tax no higher than forkstat's",
            tax,
            "+.1f",
            " points over forkstat's",
            lambda sc, v: v <= 0,
        )
    watch_ratio = [
        (sc, by[(sc, "procobsrv-ebpf-watch")]["cpu_s_per_10k"] / by[(sc, ebpf)]["cpu_s_per_10k"])
        for sc in scen
        if (sc, "procobsrv-ebpf-watch") in by
        and (sc, ebpf) in by
        and by[(sc, ebpf)].get("cpu_s_per_10k")
        and by[(sc, "procobsrv-ebpf-watch")].get("cpu_s_per_10k")
    ]
    row(
        "eBPF: `watch --json` CPU per 10k events <= 1.3x the API listener's",
        watch_ratio,
        ".2f",
        "x",
        lambda sc, v: v <= 1.3,
    )
    hooks: list[tuple[str, dict[str, float]]] = [
        (sc, by[(sc, ebpf)]["kernel_ns_per_run"]) for sc in scen if (sc, ebpf) in by
    ]
    row(
        "eBPF: kernel-side cost <= 2.5 us per call, worst hook (bpf_stats, listener reading)",
        [(sc, max(h.values(), default=None)) for sc, h in hooks],
        ",.0f",
        " ns",
        lambda sc, v: v <= 2500,
    )
    row(
        "eBPF: fork and exit hooks <= 1.5 us per call (listener reading)",
        [(sc, max(h.get("on_fork", 0), h.get("on_exit", 0))) for sc, h in hooks],
        ",.0f",
        " ns (the dearer of the two)",
        lambda sc, v: v <= 1500,
    )
    for key, limit, label in (
        ("idle", 1.0, "connector: idle latency p99 < 1 ms (default scheduler)"),
        ("idle_ebpf", 1.0, "eBPF: idle latency p99 < 1 ms without --realtime"),
        ("storm_k4", 10.0, "connector: K=4 storm latency p99 < 10 ms"),
        ("storm_k4_ebpf", 10.0, "eBPF: K=4 storm latency p99 < 10 ms"),
    ):
        p99 = (result["latency"].get(key) or {}).get("p99")
        row(
            label,
            [("p99", p99)] if p99 is not None else [],
            ".3f",
            " ms",
            lambda sc, v, lim=limit: v < lim,
        )
    opening = result["opening_ms"].get("ebpf", {})
    times = [(q, opening[f"{q}_ms"]) for q in ("first", "median", "max") if f"{q}_ms" in opening]
    row(
        "eBPF: opening the source (load + attach) < 100 ms",
        times,
        ".1f",
        " ms",
        lambda sc, v: v < 100,
    )
    mem = result.get("memory") or {}
    if "rss_growth_mib" in mem:
        row(
            f"RSS with {mem['events']:,} queued {mem['argc']}-argument execs within the byte "
            f"bound ({mem['queue_bytes_mib']:.0f} MiB), every loss counted",
            [("RSS growth", mem["rss_growth_mib"])],
            ".1f",
            " MiB",
            lambda sc, v: v <= mem["queue_bytes_mib"] and mem["exact"],
        )
    cap = result["replay"]["events_per_s"]
    row(
        "pipeline capacity >= 250,000 events/s on one core",
        [("replay", cap)],
        ",.0f",
        " events/s",
        lambda sc, v: v >= 250_000,
    )
    return rows


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Command: `{result['command']}` ({result['args']['reps']} runs each, medians; "
        f"completeness and argv/image = worst run; lost/silent = summed over runs)",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, Linux "
        f"{m['kernel']}, Python {m['python']}, {m['forkstat']}, {m['execsnoop']}; load average "
        f"at start {' '.join(m['loadavg_at_start'])}; {m['date']}; commit {m.get('commit', '?')}",
    ]
    for name, why in result["skipped"].items():
        lines.append(f"Not measured: {name} ({why}).")
    lines += [
        "",
        table(result["summary"]),
        "",
        "argv % / image %: exec'd processes of the storm whose exact argv (`/bin/true "
        "TAG-<storm>-<i>`, each unique) / absolute image (`/usr/bin/true`) the contender "
        "reported for that pid; `-`: the contender does not report it.",
        "",
        "Targets, against this run:",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| {t['target']} | {t['measured']} | {t['verdict']} |" for t in result["targets"]]
    lines += [
        "",
        "Ratios to forkstat, same run (below 1.00: procobsrv costs less):",
        "",
        "| storm | contender | tax % (forkstat) | tax ratio | CPU ratio | CPU / execsnoop's |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["ratios_vs_forkstat"]:
        lines.append(
            f"| {r['scenario']} | {r['contender']} | {fmt(r['tax_pct'], '.1f')} "
            f"({fmt(r['forkstat_tax_pct'], '.1f')}) | {fmt(r['tax_vs_forkstat'], '.2f')} "
            f"| {fmt(r['cpu_vs_forkstat'], '.2f')} | {fmt(r.get('cpu_vs_execsnoop'), '.2f')} |"
        )
    kernel = [s for s in result["summary"] if s["kernel_ns_per_run"]]
    if kernel:
        lines += [
            "",
            "Kernel-side cost of the BPF programs during the storm (`kernel.bpf_stats_enabled=1`, "
            "run_time_ns / run_cnt per program, median of the runs; charged to the traced "
            "processes, not to the listener's CPU above):",
            "",
            "| storm | contender | ns per run, per hook |",
            "|---|---|---|",
        ]
        for s in kernel:
            hooks = ", ".join(
                f"{hook} {fmt(ns, ',.0f')}" for hook, ns in s["kernel_ns_per_run"].items()
            )
            lines.append(f"| {s['scenario']} | {s['contender']} | {hooks} |")
    lat = result["latency"]
    lines += ["", "procobsrv latency, kernel timestamp -> handler call (ms):", ""]
    lines += ["| when | p50 | p99 | max |", "|---|---|---|---|"]
    for key, label in LATENCIES:
        v = lat.get(key) or {}
        if v:
            lines.append(
                f"| {label} | {fmt(v['p50'], '.3f')} | {fmt(v['p99'], '.3f')} "
                f"| {fmt(v['max'], '.2f')} |"
            )
    lines += ["", "Opening a source (open + close 10 times in a fresh process):", ""]
    for name, o in result["opening_ms"].items():
        if "first_ms" in o:
            lines.append(
                f"- {name}: first {o['first_ms']:.1f} ms, median {o['median_ms']:.1f} ms, "
                f"max {o['max_ms']:.1f} ms"
            )
        else:
            lines.append(f"- {name}: not measured ({o.get('unavailable', '?')})")
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
    mem = result.get("memory") or {}
    if mem:
        lines += [
            "",
            f"Memory with a stalled handler (`python -m benchmarks.memory`): {mem['events']:,} "
            f"execs of {mem['argc']} arguments (about {mem['estimated_bytes_per_event']:,} "
            f"bytes each, {mem['unbounded_mib']:.0f} MiB unbounded) against the byte bound "
            f"({mem['queue_bytes_mib']:.0f} MiB): peak held {mem['held_bytes_peak_mib']:.1f} "
            f"MiB, RSS {mem['rss_before_mib']:.1f} -> peak {mem['rss_peak_mib']:.1f} MiB "
            f"(+{mem['rss_growth_mib']:.1f}); {mem['delivered']:,} delivered, "
            f"{mem['lost']:,} reported lost" + (" (exact)" if mem["exact"] else " (NOT exact)"),
        ]
    wake = [s for s in result["summary"] if s.get("wakeups_by_thread")]
    if wake:
        lines += [
            "",
            "Wake-ups per event, thread by thread (voluntary context switches during the "
            "storm, `/proc/PID/task/*/status`, median of the runs):",
            "",
            "| storm | contender | wake-ups per event, per thread |",
            "|---|---|---|",
        ]
        for s in wake:
            threads = ", ".join(
                f"{name} {fmt(v, '.3f')}" for name, v in sorted(s["wakeups_by_thread"].items())
            )
            lines.append(f"| {s['scenario']} | {s['contender']} | {threads} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
