"""Runs one storm against one contender and scores what the contender saw.

Every contender runs in a process of its own: its CPU time (``/proc/<pid>/stat``, all
threads) and peak RSS (``VmHWM``) are read from outside, from just before the storm until it
has gone quiet after the storm (the monitor has caught up), so start-up and shutdown are
not counted. Ground truth comes from the spawners: every pid, its wait status, its unique
argv and the absolute path of the program it ran.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
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
CONTENDERS = (
    "none",
    "procobsrv-api",
    "procobsrv-watch",
    "procobsrv-ebpf",
    "procobsrv-ebpf-watch",
    "forkstat",
    "execsnoop",
    "psutil-poll",
)
TRACEFS = "/sys/kernel/tracing"
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
    #: (pid, raw wait status, kind, argv, image) for every process the spawners started
    #: (argv empty and image "" for a fork without exec).
    procs: list[tuple[int, int, str, list[str], str]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def rate(self) -> float:
        return self.total / self.seconds if self.seconds else 0.0

    def expected(self) -> dict[str, int]:
        """Events per kind the storm made (a fork-without-exec child has no exec)."""
        n = len(self.procs)
        return {"fork": n, "exec": len(self.execed()), "exit": n}

    def execed(self) -> list[tuple[int, int, str, list[str], str]]:
        """The processes that ran a program of their own (those with an argv and image)."""
        return [p for p in self.procs if p[3]]

    @property
    def events(self) -> int:
        return sum(self.expected().values())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


_storm_serial = itertools.count(1)


def run_storm(k: int, total: int, mode: str = "spawn", interval: float = 0.0) -> Storm:
    """K spawner processes, started together, ``total`` processes between them."""
    tag = f"{os.getpid() % 10_000}{next(_storm_serial):03d}"  # digits only: sleep's argv uses it
    tmp = tempfile.mkdtemp(prefix="storm-", dir=SCRATCH)
    outs = [os.path.join(tmp, f"s{i}.json") for i in range(k)]
    counts = [total // k + (1 if i < total % k else 0) for i in range(k)]
    workers = [
        subprocess.Popen(
            [PY, "-m", "benchmarks.spawner", str(n), mode, out, str(interval), f"{tag}{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=ROOT,
        )
        for i, (n, out) in enumerate(zip(counts, outs, strict=True))
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
        storm.procs.extend((p, s, kind, argv, image) for p, s, kind, argv, image in data["procs"])
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


def wakeups(pid: int, field: str = "wakeups") -> dict[str, int]:
    """Per live thread of ``pid`` (keyed name/tid): its voluntary context switches so far
    (how often it went to sleep and was woken again), or with ``field="cpu"`` its CPU time
    in ns (schedstat)."""
    out: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            if field == "cpu":
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    out[f"{name}/{tid}"] = int(f.read().split()[0])
                continue
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        out[f"{name}/{tid}"] = int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return out


def wakeups_per_event(
    before: dict[str, int], after: dict[str, int], events: int, names: dict[int, str]
) -> dict[str, float]:
    """Thread name -> wake-ups per event over the interval (threads that slept through it
    left out; a thread started during it counts from zero). ``names``: tid -> the name the
    contender gave the thread, where it says (else the kernel's ``comm``)."""
    out: dict[str, float] = {}
    for key, n in after.items():
        woke = n - before.get(key, 0)
        if woke > 0 and events:
            comm, tid = key.rsplit("/", 1)
            name = names.get(int(tid), comm)
            out[name] = out.get(name, 0.0) + woke / events
    return out


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
class Unavailable(RuntimeError):
    """A contender that cannot run on this machine or checkout (the run goes on without it)."""


@dataclass
class Observed:
    """What one contender reported: per (pid, kind) counts, exit statuses, losses, and the
    command lines and images it gave for each pid."""

    counts: Counter[tuple[int, str]] = field(default_factory=Counter)
    #: pid -> (exit_code, signal) as reported, where the contender reports it.
    exits: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)
    lost: int = 0  # events the contender said it lost (a count)
    overflow_reports: int = 0  # forkstat: "nobufs" lines (it cannot say how many)
    #: (pid, handler ns - kernel timestamp ns) per event, where the contender exposes both.
    latencies_ns: list[tuple[int, int]] = field(default_factory=list)
    kinds_supported: tuple[str, ...] = KINDS
    #: pid -> every argv reported for it (text tools: their output split into words).
    command_lines: defaultdict[int, set[tuple[str, ...]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    #: pid -> every image path reported for it.
    images: defaultdict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    #: Which of "argv" and "image" the contender reports at all.
    reports: tuple[str, ...] = ("argv", "image")
    #: tid -> thread name, where the contender says (procobsrv's listener does).
    thread_names: dict[int, str] = field(default_factory=dict)

    def saw(self, pid: int, argv: Iterable[str] | None, image: str | None) -> None:
        if argv is not None:
            self.command_lines[pid].add(tuple(argv))
        if image is not None:
            self.images[pid].add(image)


class Contender:
    name = "none"
    poll_forever = False  # never quiet (a poller): wait a fixed time instead
    stop_signal = signal.SIGTERM
    #: Whether its kernel side is BPF programs whose cost ``kernel.bpf_stats_enabled`` shows.
    bpf = False

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
        if line.startswith("unavailable:"):
            raise Unavailable(f"{self.name}: {line.strip()}")
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
        return Observed(reports=())  # no monitor: nothing to score

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            os.unlink(self.out)
        except FileNotFoundError:
            pass


class ApiListener(Contender):
    """``ApplicationScope`` with the connector source forced (``benchmarks/listener.py``)."""

    name = "procobsrv-api"
    source = "connector"

    def command(self) -> list[str]:
        return [PY, "-m", "benchmarks.listener", self.out, "--source", self.source]

    def observed(self) -> Observed:
        with open(self.out) as f:
            data = json.load(f)
        obs = Observed(lost=data["lost"])
        obs.thread_names = {int(tid): name for tid, name in data.get("threads", {}).items()}
        for kind, pid, code, sig, kernel_ns, handler_ns, image, argv in data["events"]:
            obs.counts[(pid, kind)] += 1
            obs.saw(pid, argv, image)
            if kind == "exit":
                obs.exits[pid] = (code, sig)
            obs.latencies_ns.append((pid, handler_ns - kernel_ns))
        return obs


class ApiListenerRealtime(ApiListener):
    """The same listener with its monitoring threads SCHED_FIFO (latency runs only)."""

    name = "procobsrv-api-rt"

    def command(self) -> list[str]:
        return [*super().command(), "--realtime"]


class EbpfListener(ApiListener):
    """``ApplicationScope`` with the eBPF source (``procobsrv.linux.EbpfSource``)."""

    name = "procobsrv-ebpf"
    source = "ebpf"
    bpf = True


class Watch(Contender):
    """``procobsrv watch --json --source connector``. stdout goes to a tmpfs file, not
    /dev/null, so that its completeness can be checked too (the same write system call)."""

    name = "procobsrv-watch"
    source = "connector"

    def command(self) -> list[str]:
        return [PY, "-m", "procobsrv", "watch", "--json", "--source", self.source]

    def start(self) -> None:
        cmd = self.command()
        self._file = open(self.out, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            cmd, stdout=self._file, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        # Other stderr lines (a source's notes) may come first; "watching" says it is ready.
        while line and "watching" not in line and self.proc.poll() is None:
            line = self.proc.stderr.readline()
        if "watching" not in line:
            rest = self.proc.stderr.read()
            self.proc.wait()
            self._file.close()
            raise Unavailable(f"{self.name} did not start: {(line + rest).strip()!r}")

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
                obs.saw(ev["pid"], ev["command_line"], ev["image"])
                if kind == "exit":
                    obs.exits[ev["pid"]] = (ev["exit_code"], ev["signal"])
        return obs


class EbpfWatch(Watch):
    """``procobsrv watch --json --source ebpf``."""

    name = "procobsrv-ebpf-watch"
    source = "ebpf"
    bpf = True


class Forkstat(Contender):
    """The Debian ``forkstat`` (C, same connector, reads /proc/PID/cmdline per event; it
    prints the command line, not the image)."""

    name = "forkstat"
    stop_signal = signal.SIGINT  # its Ctrl+C path flushes the output

    def command(self) -> list[str]:
        return ["forkstat", "-e", "fork,exec,exit"]

    def start(self) -> None:
        if shutil.which("forkstat") is None:
            raise Unavailable("forkstat is not installed (apt-get install forkstat)")
        self._file = open(self.out, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            self.command(), stdout=self._file, stderr=subprocess.STDOUT, text=True
        )
        # forkstat says nothing once subscribed (its header sits in a buffer): wait for its
        # netlink socket, then give it a moment to subscribe.
        _wait_for_fd(self.proc.pid, "socket:")
        time.sleep(0.2)

    def stop(self) -> None:
        super().stop()
        self._file.close()

    def observed(self) -> Observed:
        # "HH:MM:SS exec  PID  <cmdline>", "HH:MM:SS exit  PID  STATUS  DURATION  <cmdline>"
        obs = Observed(reports=("argv",))
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
                    obs.saw(pid, parts[3:], None)
                elif event == "exit":
                    obs.counts[(pid, "exit")] += 1
                    obs.saw(pid, parts[5:], None)
                    try:
                        status = int(parts[3])
                    except ValueError:
                        continue
                    obs.exits[pid] = _decode(status)
        return obs


class Execsnoop(Contender):
    """``execsnoop`` from libbpf-tools (C + libbpf: argv read in the kernel at
    ``sys_enter_execve``, exec only). Its ARGS column is the path as passed to execve
    followed by argv[1:], at most 20 arguments (``--max-args``, then `` ...``) of at most
    127 characters each, space-separated; it prints no absolute image."""

    name = "execsnoop"
    stop_signal = signal.SIGINT  # it flushes and detaches on Ctrl+C
    bpf = True

    def command(self) -> list[str]:
        return ["execsnoop"]

    def start(self) -> None:
        if shutil.which("execsnoop") is None:
            raise Unavailable("execsnoop is not installed (apt-get install libbpf-tools)")
        ensure_tracefs()
        self._file = open(self.out, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            self.command(), stdout=self._file, stderr=subprocess.STDOUT, text=True
        )
        # Its header sits in a stdio buffer: it is attached once its BPF links exist.
        if not _wait_for_fd(self.proc.pid, "anon_inode:bpf_link"):
            self.stop()
            with open(self.out, errors="replace") as f:
                raise Unavailable(f"execsnoop did not attach: {f.read().strip()!r}")
        time.sleep(0.2)

    def stop(self) -> None:
        super().stop()
        self._file.close()

    def observed(self) -> Observed:
        obs = Observed(kinds_supported=("exec",), reports=("argv",))
        with open(self.out, errors="replace") as f:
            for line in f:
                if lost := _EXECSNOOP_LOST.search(line):
                    obs.lost += int(lost.group(1))
                    continue
                # "%-16s %-6d %-6d %3d " comm, pid, ppid, return value, then the arguments
                fields = line[17:].split()
                if len(fields) < 3 or not fields[0].isdigit() or fields[2] != "0":
                    continue
                pid = int(fields[0])
                obs.counts[(pid, "exec")] += 1
                obs.saw(pid, fields[3:], None)
        return obs


_EXECSNOOP_LOST = re.compile(r"Lost (\d+) events")


def ensure_tracefs() -> None:
    """Mount tracefs where libbpf looks for tracepoints (root only; not mounted at boot)."""
    if os.path.isdir(os.path.join(TRACEFS, "events")):
        return
    if os.geteuid() != 0:
        raise Unavailable(f"tracefs is not mounted at {TRACEFS} and only root may mount it")
    subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], check=True)


def _fd_targets(pid: int) -> list[str]:
    try:
        return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return []


def _wait_for_fd(pid: int, prefix: str, timeout: float = 5.0) -> bool:
    """Until process ``pid`` holds a file descriptor whose target starts with ``prefix``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(t.startswith(prefix) for t in _fd_targets(pid)):
            return True
        time.sleep(0.02)
    return False


class Poller(Contender):
    """psutil every 10 ms; for each new pid it also asks ``cmdline()`` and ``exe()``, as a
    user wanting the command line would."""

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
        for pid, argv, image in data["identity"]:
            obs.saw(pid, argv, image)
        return obs


CONTENDER_TYPES: dict[str, type[Contender]] = {
    c.name: c
    for c in (
        Contender,
        ApiListener,
        ApiListenerRealtime,
        EbpfListener,
        Watch,
        EbpfWatch,
        Forkstat,
        Execsnoop,
        Poller,
    )
}


# -- kernel-side cost of BPF programs -------------------------------------------------------
def bpf_prog_ids(pid: int) -> set[int]:
    """The ids of the BPF programs process ``pid`` holds open (from its fdinfo)."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def bpf_prog_stats(ids: set[int]) -> dict[str, tuple[int, int]]:
    """name -> (run_time_ns, run_cnt) of those programs, from ``bpftool prog show -j``."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, check=True)
    stats: dict[str, tuple[int, int]] = {}
    for prog in json.loads(out.stdout):
        if prog["id"] in ids:
            ns, cnt = stats.get(prog["name"], (0, 0))
            stats[prog["name"]] = (ns + prog.get("run_time_ns", 0), cnt + prog.get("run_cnt", 0))
    return stats


class BpfStats:
    """``kernel.bpf_stats_enabled=1`` for the duration (restored after), and the run time per
    program invocation between :meth:`begin` and :meth:`end`."""

    SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before: dict[str, tuple[int, int]] = {}
        self.ids: set[int] = set()

    def __enter__(self) -> BpfStats:
        with open(self.SYSCTL) as f:
            self._previous = f.read().strip()
        self._set("1")
        return self

    def _set(self, value: str) -> None:
        with open(self.SYSCTL, "w") as f:
            f.write(value)

    def begin(self) -> None:
        self.ids = bpf_prog_ids(self.pid)
        self.before = bpf_prog_stats(self.ids)

    def end(self) -> dict[str, dict[str, float]]:
        """hook -> {"runs", "ns_per_run"} over the interval; "all" sums every hook."""
        after = bpf_prog_stats(self.ids)
        out: dict[str, dict[str, float]] = {}
        total_ns = total_runs = 0
        for name, (ns, cnt) in after.items():
            ns0, cnt0 = self.before.get(name, (0, 0))
            runs, spent = cnt - cnt0, ns - ns0
            total_ns, total_runs = total_ns + spent, total_runs + runs
            out[name] = {"runs": runs, "ns_per_run": spent / runs if runs else 0.0}
        if out:
            out["all"] = {
                "runs": total_runs,
                "ns_per_run": total_ns / total_runs if total_runs else 0.0,
            }
        return out

    def __exit__(self, *exc: object) -> None:
        self._set(self._previous)


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
    #: Processes that exec'd (the ones with an argv and image of their own).
    execed: int = 0
    #: % of those whose exact argv / absolute image the contender reported (None: it does
    #: not report that at all).
    exact: dict[str, float | None] = field(default_factory=dict)
    #: BPF contenders: hook -> {"runs", "ns_per_run"} during the storm (bpf_stats).
    kernel_ns: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Thread name -> voluntary context switches per event during the storm.
    wakeups: dict[str, float] = field(default_factory=dict)
    #: Thread name -> CPU microseconds per event during the storm.
    thread_cpu_us: dict[str, float] = field(default_factory=dict)

    @property
    def wakeups_max(self) -> float | None:
        """Wake-ups per event of the thread that woke most often."""
        return max(self.wakeups.values()) if self.wakeups else None

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
    for pid, _status, kind, _argv, _image in storm.procs:
        truth[pid].extend(["fork", "exit"] if kind == "fork" else ["fork", "exec", "exit"])
    truth_count = Counter((pid, k) for pid, kinds in truth.items() for k in kinds)
    captured = dict.fromkeys(KINDS, 0)
    for key, want in truth_count.items():
        captured[key[1]] += min(want, obs.counts.get(key, 0))
    wrong = 0
    for pid, status, *_ in storm.procs:
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
    execed = storm.execed()
    exact_argv = sum(1 for p in execed if tuple(p[3]) in obs.command_lines.get(p[0], ()))
    exact_image = sum(1 for p in execed if p[4] in obs.images.get(p[0], ()))
    exact = {
        "argv": 100.0 * exact_argv / len(execed) if "argv" in obs.reports else None,
        "image": 100.0 * exact_image / len(execed) if "image" in obs.reports else None,
    }
    return RunResult(
        contender=name,
        k=storm.k,
        mode=storm.mode,
        processes=len(storm.procs),
        events=storm.events,
        storm_seconds=storm.seconds,
        rate=storm.rate,
        expected=expected,
        captured=captured,
        completeness=completeness,
        missing=missing,
        lost=obs.lost,
        overflow_reports=obs.overflow_reports,
        unaccounted=max(0, missing - obs.lost),
        wrong_exit_status=wrong,
        execed=len(execed),
        exact=exact if execed else {},
    )


def run_one(name: str, k: int, total: int, mode: str = "spawn", interval: float = 0.0) -> RunResult:
    """Start the contender, run the storm, let the contender catch up, score it."""
    contender = CONTENDER_TYPES[name]()
    try:
        contender.start()  # raises Unavailable when it cannot run here
        proc = contender.proc
        kernel_ns: dict[str, dict[str, float]] = {}
        with contextlib.ExitStack() as stack:
            bpf = None
            if proc is not None and contender.bpf and os.geteuid() == 0 and shutil.which("bpftool"):
                bpf = stack.enter_context(BpfStats(proc.pid))
                bpf.begin()
            cpu0 = cpu_seconds(proc.pid) if proc else 0.0
            woke0 = wakeups(proc.pid) if proc else {}
            cpu_by0 = wakeups(proc.pid, "cpu") if proc else {}
            woke1: dict[str, int] = {}
            cpu_by1: dict[str, int] = {}
            storm = run_storm(k, total, mode, interval)
            cpu = rss = None
            if proc is not None:
                if contender.poll_forever:
                    time.sleep(0.3)
                else:
                    wait_quiet(proc.pid)
                cpu = cpu_seconds(proc.pid) - cpu0
                woke1 = wakeups(proc.pid)
                cpu_by1 = wakeups(proc.pid, "cpu")
                rss = peak_rss_mib(proc.pid)
                if bpf is not None:
                    kernel_ns = bpf.end()
                contender.stop()
        obs = contender.observed()
        result = score(name, storm, obs)
        result.cpu_seconds, result.peak_rss_mib, result.kernel_ns = cpu, rss, kernel_ns
        result.wakeups = wakeups_per_event(woke0, woke1, storm.events, obs.thread_names)
        result.thread_cpu_us = {
            name: v * 1e-3  # ns per event -> us per event
            for name, v in wakeups_per_event(
                cpu_by0, cpu_by1, storm.events, obs.thread_names
            ).items()
        }
        # Latency of the storm's own events only: on a shared machine the others' processes
        # (and the eBPF source's snapshot of processes already running) are not the workload.
        pids = {p[0] for p in storm.procs}
        result.latency_ms = latency_summary(ns for pid, ns in obs.latencies_ns if pid in pids)
        return result
    finally:
        contender.cleanup()
