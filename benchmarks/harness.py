"""Runs one storm against one contender and scores what the contender saw.

Every contender runs in a process of its own: its CPU time (``/proc/<pid>/stat``, all
threads) and peak RSS (``VmHWM``) are read from outside, from just before the storm until it
has gone quiet after the storm (the monitor has caught up), so start-up and shutdown are
not counted. Ground truth comes from the spawners: every pid and its wait status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
KINDS = ("fork", "exec", "exit")
CONTENDERS = ("none", "procobsrv-api", "procobsrv-watch", "forkstat", "psutil-poll")
#: Scratch files live in RAM so that disk speed does not enter the figures.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None


# -- the workload ------------------------------------------------------------------------
@dataclass
class Storm:
    k: int
    total: int
    mode: str  # "spawn" (posix_spawn + wait of /bin/true) or "mixed"
    start_ns: int = 0
    end_ns: int = 0
    #: (pid, raw wait status, kind) for every process the spawners started.
    procs: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0

    def expected(self) -> dict[str, int]:
        """Events per kind the storm made (a fork-without-exec child has no exec)."""
        n = len(self.procs)
        return {"fork": n, "exec": sum(1 for p in self.procs if p[2] != "fork"), "exit": n}

    @property
    def events(self) -> int:
        return sum(self.expected().values())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_storm(k: int, total: int, mode: str = "spawn", interval: float = 0.0) -> Storm:
    """K spawner processes, started together, ``total`` processes between them."""
    tmp = tempfile.mkdtemp(prefix="storm-", dir=SCRATCH)
    outs = [os.path.join(tmp, f"s{i}.json") for i in range(k)]
    counts = [total // k + (1 if i < total % k else 0) for i in range(k)]
    workers = [
        subprocess.Popen(
            [PY, "-m", "benchmarks.spawner", str(n), mode, out, str(interval)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=ROOT,
        )
        for n, out in zip(counts, outs, strict=True)
    ]
    for w in workers:
        assert w.stdout is not None and w.stdout.readline().strip() == "ready"
    for w in workers:  # the start signal, as close together as we can
        assert w.stdin is not None
        w.stdin.write("go\n")
        w.stdin.flush()
    for w in workers:
        if w.wait() != 0:
            raise RuntimeError(f"a storm worker failed with status {w.returncode}")
    storm = Storm(k, total, mode)
    for out in outs:
        with open(out) as f:
            data = json.load(f)
        os.unlink(out)
        storm.start_ns = min(storm.start_ns or data["start_ns"], data["start_ns"])
        storm.end_ns = max(storm.end_ns, data["end_ns"])
        storm.procs.extend((p, s, kind) for p, s, kind in data["procs"])
    os.rmdir(tmp)
    return storm


# -- measuring a process from outside -----------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """CPU time of every live thread of ``pid`` so far, exact to the ns (schedstat), unlike
    the tick-sampled utime/stime that miss a process which wakes for microseconds at a time."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return total / 1e9


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_quiet(pid: int, timeout: float = 20.0, step: float = 0.1) -> None:
    """Until the process has used (almost) no CPU for two steps: it has caught up."""
    deadline = time.monotonic() + timeout
    last, calm = cpu_seconds(pid), 0
    while time.monotonic() < deadline and calm < 2:
        time.sleep(step)
        now = cpu_seconds(pid)
        calm = calm + 1 if now - last <= 0.002 else 0
        last = now
    time.sleep(step)


# -- contenders ------------------------------------------------------------------------------
@dataclass
class Observed:
    """What one contender reported: per (pid, kind) counts, exit statuses, losses."""

    counts: Counter[tuple[int, str]] = field(default_factory=Counter)
    #: pid -> (exit_code, signal) as reported, where the contender reports it.
    exits: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)
    lost: int = 0  # events the contender said it lost (a count)
    overflow_reports: int = 0  # forkstat: "nobufs" lines (it cannot say how many)
    #: (kernel timestamp ns, handler ns) per event, where the contender exposes both.
    latencies_ns: list[int] = field(default_factory=list)
    kinds_supported: tuple[str, ...] = KINDS


class Contender:
    name = "none"
    poll_forever = False  # never quiet (a poller): wait a fixed time instead
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        fd, self.out = tempfile.mkstemp(prefix=f"{self.name}-", dir=SCRATCH)
        os.close(fd)

    def command(self) -> list[str]:
        return []

    def start(self) -> None:
        cmd = self.command()
        if not cmd:
            return
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"{self.name} did not start: {line!r} {self.proc.stderr.read()!r}")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()

    def observed(self) -> Observed:
        return Observed()

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            os.unlink(self.out)
        except FileNotFoundError:
            pass


class ApiListener(Contender):
    name = "procobsrv-api"

    def command(self) -> list[str]:
        return [PY, "-m", "benchmarks.listener", self.out]

    def observed(self) -> Observed:
        with open(self.out) as f:
            data = json.load(f)
        obs = Observed(lost=data["lost"])
        for kind, pid, code, sig, kernel_ns, handler_ns in data["events"]:
            obs.counts[(pid, kind)] += 1
            if kind == "exit":
                obs.exits[pid] = (code, sig)
            obs.latencies_ns.append(handler_ns - kernel_ns)
        return obs


class ApiListenerRealtime(ApiListener):
    """The same listener with its monitoring threads SCHED_FIFO (latency runs only)."""

    name = "procobsrv-api-rt"

    def command(self) -> list[str]:
        return [*super().command(), "--realtime"]


class Watch(Contender):
    """``procobsrv watch --json``. stdout goes to a tmpfs file, not /dev/null, so that its
    completeness can be checked too (the cost of the write is the same system call)."""

    name = "procobsrv-watch"

    def command(self) -> list[str]:
        return [PY, "-m", "procobsrv", "watch", "--json"]

    def start(self) -> None:
        self._file = open(self.out, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            self.command(), stdout=self._file, stderr=subprocess.PIPE, text=True, env=_env(),
            cwd=ROOT,
        )  # fmt: skip
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if "watching" not in line:
            raise RuntimeError(f"watch did not start: {line!r}")

    def stop(self) -> None:
        super().stop()
        self._file.close()

    def observed(self) -> Observed:
        obs = Observed()
        names = {"created": "fork", "exec": "exec", "exited": "exit"}
        with open(self.out) as f:
            for line in f:
                ev = json.loads(line)
                if ev["kind"] == "lost":
                    obs.lost += ev["count"]
                    continue
                kind = names[ev["kind"]]
                obs.counts[(ev["pid"], kind)] += 1
                if kind == "exit":
                    obs.exits[ev["pid"]] = (ev["exit_code"], ev["signal"])
        return obs


class Forkstat(Contender):
    """The Debian ``forkstat`` (C, same connector, reads /proc per event)."""

    name = "forkstat"
    stop_signal = signal.SIGINT  # its Ctrl+C path flushes the output

    def command(self) -> list[str]:
        return ["forkstat", "-e", "fork,exec,exit"]

    def start(self) -> None:
        self._file = open(self.out, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            self.command(), stdout=self._file, stderr=subprocess.STDOUT, text=True
        )
        # forkstat says nothing once subscribed (its header sits in a buffer): wait for its
        # netlink socket, then give it a moment to subscribe.
        deadline = time.monotonic() + 5
        while not _has_netlink_socket(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)

    def stop(self) -> None:
        super().stop()
        self._file.close()

    def observed(self) -> Observed:
        obs = Observed()
        with open(self.out, errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 4:
                    continue
                event = parts[1]
                if event == "recv" and "nobufs" in line:
                    obs.overflow_reports += 1
                    continue
                try:
                    pid = int(parts[2])
                except ValueError:
                    continue
                if event == "fork" and parts[3] == "child":
                    obs.counts[(pid, "fork")] += 1
                elif event == "exec":
                    obs.counts[(pid, "exec")] += 1
                elif event == "exit":
                    obs.counts[(pid, "exit")] += 1
                    try:
                        status = int(parts[3])
                    except ValueError:
                        continue
                    obs.exits[pid] = _decode(status)
        return obs


def _has_netlink_socket(pid: int) -> bool:
    try:
        return any(
            os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:
        return False


class Poller(Contender):
    name = "psutil-poll"
    poll_forever = True

    def command(self) -> list[str]:
        return [PY, "-m", "benchmarks.poller", self.out]

    def observed(self) -> Observed:
        with open(self.out) as f:
            data = json.load(f)
        obs = Observed(kinds_supported=("fork", "exit"))
        for pid in data["seen"]:
            obs.counts[(pid, "fork")] += 1
        for pid in data["gone"]:
            obs.counts[(pid, "exit")] += 1
        return obs


CONTENDER_TYPES: dict[str, type[Contender]] = {
    c.name: c for c in (Contender, ApiListener, ApiListenerRealtime, Watch, Forkstat, Poller)
}


def _decode(status: int) -> tuple[int | None, int | None]:
    if status & 0x7F == 0:
        return (status >> 8) & 0xFF, None
    return None, status & 0x7F


# -- scoring ---------------------------------------------------------------------------------
@dataclass
class RunResult:
    contender: str
    k: int
    mode: str
    processes: int
    events: int
    storm_seconds: float
    rate: float  # processes per second
    cpu_seconds: float | None = None
    peak_rss_mib: float | None = None
    expected: dict[str, int] = field(default_factory=dict)
    captured: dict[str, int] = field(default_factory=dict)
    completeness: dict[str, float | None] = field(default_factory=dict)
    missing: int = 0
    lost: int = 0
    overflow_reports: int = 0
    #: missing events not covered by a reported loss: the silent misses.
    unaccounted: int = 0
    wrong_exit_status: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def latency_summary(latencies_ns: Iterable[int]) -> dict[str, float]:
    values = list(latencies_ns)
    if not values:
        return {}
    return {
        "p50": percentile(values, 0.50) / 1e6,
        "p99": percentile(values, 0.99) / 1e6,
        "max": max(values) / 1e6,
        "n": float(len(values)),
    }


def score(name: str, storm: Storm, obs: Observed) -> RunResult:
    expected = storm.expected()
    truth: dict[int, list[str]] = defaultdict(list)
    for pid, _status, kind in storm.procs:
        truth[pid].extend(["fork", "exit"] if kind == "fork" else ["fork", "exec", "exit"])
    truth_count = Counter((pid, k) for pid, kinds in truth.items() for k in kinds)
    captured = dict.fromkeys(KINDS, 0)
    for key, want in truth_count.items():
        captured[key[1]] += min(want, obs.counts.get(key, 0))
    wrong = 0
    for pid, status, _kind in storm.procs:
        got = obs.exits.get(pid)
        if got is not None and got != _decode(status):
            wrong += 1
    completeness: dict[str, float | None] = {
        k: (100.0 * captured[k] / expected[k] if expected[k] else 100.0)
        if k in obs.kinds_supported
        else None
        for k in KINDS
    }
    missing = sum(expected[k] - captured[k] for k in obs.kinds_supported)
    return RunResult(
        contender=name, k=storm.k, mode=storm.mode, processes=len(storm.procs),
        events=storm.events, storm_seconds=storm.seconds, rate=storm.rate,
        expected=expected, captured=captured, completeness=completeness, missing=missing,
        lost=obs.lost, overflow_reports=obs.overflow_reports,
        unaccounted=max(0, missing - obs.lost), wrong_exit_status=wrong,
    )  # fmt: skip


def run_one(name: str, k: int, total: int, mode: str = "spawn", interval: float = 0.0) -> RunResult:
    """Start the contender, run the storm, let the contender catch up, score it."""
    contender = CONTENDER_TYPES[name]()
    try:
        contender.start()
        proc = contender.proc
        cpu0 = cpu_seconds(proc.pid) if proc else 0.0
        storm = run_storm(k, total, mode, interval)
        cpu = rss = None
        if proc is not None:
            if contender.poll_forever:
                time.sleep(0.3)
            else:
                wait_quiet(proc.pid)
            cpu = cpu_seconds(proc.pid) - cpu0
            rss = peak_rss_mib(proc.pid)
            contender.stop()
        obs = contender.observed()
        result = score(name, storm, obs)
        result.cpu_seconds, result.peak_rss_mib = cpu, rss
        if obs.latencies_ns:
            truth = {p for p, _s, _k in storm.procs}
            result.latency_ms = latency_summary(obs.latencies_ns) if truth else {}
        return result
    finally:
        contender.cleanup()
