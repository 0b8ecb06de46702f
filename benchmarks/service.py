"""What ``procobsrv serve`` costs: CPU per 10,000 events for the service and for each client,
with 1, 10 and 100 clients, and the latency from the kernel to a client's handler, idle and
in a storm; beside a root process using the eBPF source directly (the target: a client
through the service costs no more than that).

Each client is ``benchmarks.listener --source service`` (ApplicationScope with a handler that
appends a tuple per event: the same program as the direct contender, ``--source ebpf``), in
a process of its own, as root (it sees every event, as the direct one does). CPU is every
thread's time from just before the storm until all have caught up, per 10,000 events *seen*
(the machine's other processes are seen too). Latency: the handler's clock minus the
kernel's timestamp of the event, for the storm's events; "idle" is a storm of one spawner
with 20 ms between processes.

Run (root): ``.venv/bin/python -m benchmarks.service [--total 3000] [--reps 3]
[--clients 1,10,100]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field

from .harness import (
    PY,
    ROOT,
    SCRATCH,
    EbpfListener,
    Storm,
    _env,
    cpu_seconds,
    run_storm,
    wait_quiet,
)

STARTED_TOGETHER = 10
#: Processes of the idle run, and the pause between two of them (seconds).
IDLE_TOTAL, IDLE_INTERVAL = 200, 0.02


@dataclass
class Run:
    """One measured storm: CPU seconds per 10k events seen, and latencies (ns)."""

    service_cpu: float = 0.0
    client_cpu: list[float] = field(default_factory=list)
    latencies: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    lost: int = 0


def start_service(directory: str) -> subprocess.Popen[str]:
    path = os.path.join(directory, "events.sock")
    proc = subprocess.Popen(
        [PY, "-m", "procobsrv", "serve", "--socket", path],
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "serving" not in line:
        raise RuntimeError(f"serve did not start: {line}{proc.stderr.read()}")
    return proc


def start_clients(
    count: int, socket_path: str, clients: list[tuple[subprocess.Popen[str], str]]
) -> None:
    """``count`` clients into ``clients`` (whoever made the list stops them, also after a
    failure here), started ten at a time (a hundred interpreters starting at once on a small
    machine would only measure the machine)."""
    env = {**_env(), "PROCOBSRV_SOCKET": socket_path}
    while len(clients) < count:
        group = []
        for _ in range(min(STARTED_TOGETHER, count - len(clients))):
            fd, out = tempfile.mkstemp(prefix="service-client-", dir=SCRATCH)
            os.close(fd)
            proc = subprocess.Popen(
                [PY, "-m", "benchmarks.listener", out, "--source", "service"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=ROOT,
            )
            group.append((proc, out))
        clients += group
        for proc, _ in group:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"a client did not start: {line} {err!r}")


def finish_clients(
    clients: list[tuple[subprocess.Popen[str], str]], run: Run, storm: Storm
) -> None:
    """Stop each client; its events seen, losses, and the latencies of the storm's events."""
    for proc, _ in clients:
        proc.terminate()
    pids = {p[0] for p in storm.procs}
    for proc, out in clients:
        proc.communicate(timeout=120)
        with open(out) as f:
            data = json.load(f)
        os.unlink(out)
        run.seen.append(len(data["events"]))
        run.lost += data["lost"]
        run.latencies += [h - k for _, pid, _, _, k, h, _, _ in data["events"] if pid in pids]


def through_service(count: int, total: int, interval: float, k: int) -> Run:
    directory = tempfile.mkdtemp(prefix="procobsrv-bench-")
    os.chmod(directory, 0o755)
    service = start_service(directory)
    clients: list[tuple[subprocess.Popen[str], str]] = []
    try:
        start_clients(count, os.path.join(directory, "events.sock"), clients)
        pids = [service.pid] + [p.pid for p, _ in clients]
        before = [cpu_seconds(pid) for pid in pids]
        storm = run_storm(k, total, interval=interval)
        for pid in pids:
            wait_quiet(pid)
        used = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
        run = Run()
        finish_clients(clients, run, storm)
        clients = []
        seen = statistics.median(run.seen)
        run.service_cpu = used[0] / seen * 1e4
        run.client_cpu = [cpu / n * 1e4 for cpu, n in zip(used[1:], run.seen, strict=True)]
        return run
    finally:
        for proc, out in clients:
            proc.kill()
            proc.wait()
            os.unlink(out)
        service.terminate()
        _, said = service.communicate(timeout=30)
        if said.strip():
            print(f"the service said: {said.strip()[-2000:]}", flush=True)
        shutil.rmtree(directory, ignore_errors=True)


def direct(total: int, interval: float, k: int) -> Run:
    """The same program with the eBPF source in its own process (root)."""
    contender = EbpfListener()
    try:
        contender.start()
        assert contender.proc is not None
        before = cpu_seconds(contender.proc.pid)
        storm = run_storm(k, total, interval=interval)
        wait_quiet(contender.proc.pid)
        cpu = cpu_seconds(contender.proc.pid) - before
        contender.stop()
        obs = contender.observed()
        pids = {p[0] for p in storm.procs}
        seen = sum(obs.counts.values())
        return Run(
            client_cpu=[cpu / seen * 1e4],
            latencies=[ns for pid, ns in obs.latencies_ns if pid in pids],
            seen=[seen],
            lost=obs.lost,
        )
    finally:
        contender.cleanup()


def percentile(values: list[int], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] / 1e3 if ordered else 0.0


def describe(label: str, runs: list[Run]) -> dict[str, float]:
    figures = {
        "service_cpu_s_per_10k": statistics.median(r.service_cpu for r in runs),
        "client_cpu_s_per_10k": statistics.median(statistics.median(r.client_cpu) for r in runs),
        "p50_us": statistics.median(percentile(r.latencies, 0.5) for r in runs),
        "p99_us": statistics.median(percentile(r.latencies, 0.99) for r in runs),
        "lost": sum(r.lost for r in runs),
    }
    print(
        f"{label:22} service {figures['service_cpu_s_per_10k']:.3f} s/10k  "
        f"client {figures['client_cpu_s_per_10k']:.3f} s/10k  "
        f"latency p50 {figures['p50_us']:.0f} us p99 {figures['p99_us']:.0f} us  "
        f"lost {figures['lost']}",
        flush=True,
    )
    return figures


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.service", description=__doc__)
    p.add_argument("--total", type=int, default=3000, help="processes per K=2 storm")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--clients", default="1,10,100")
    args = p.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    results: dict[str, dict[str, float]] = {}
    for what, total, interval, k in (
        ("storm", args.total, 0.0, 2),
        ("idle", IDLE_TOTAL, IDLE_INTERVAL, 1),
    ):
        runs: dict[str, list[Run]] = {"direct eBPF": []}
        runs.update({f"service, {n} clients": [] for n in counts})
        for _ in range(args.reps):  # alternating, so that a busy moment hits all alike
            runs["direct eBPF"].append(direct(total, interval, k))
            for n in counts:
                runs[f"service, {n} clients"].append(through_service(n, total, interval, k))
                print(f"  {what}: {n} clients measured", flush=True)
        print(f"\n{what}: {total} processes, K={k}, median of {args.reps} runs")
        for label, measured in runs.items():
            results[f"{what}: {label}"] = describe(label, measured)
    base = results["storm: direct eBPF"]["client_cpu_s_per_10k"]
    worst = max(results[f"storm: service, {n} clients"]["client_cpu_s_per_10k"] for n in counts)
    verdict = "met" if worst <= base else "not met"
    print(
        f"\ntarget (a client costs no more than the direct eBPF process): {verdict} "
        f"({worst:.3f} vs {base:.3f} s per 10k events)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
