"""One storm worker: starts and reaps short processes as fast as it can; records the truth.

Run as ``python -m benchmarks.spawner COUNT MODE OUT [INTERVAL [TAG]]``; prints ``ready``,
waits for a line on stdin (the start signal, so that K workers start together), then writes
JSON to OUT: ``{"start_ns", "end_ns", "procs": [[pid, wait_status, kind, argv, image], ...]}``.
Kinds: ``spawn`` (fork + exec + exit), ``fork`` (fork without exec: fork + exit; argv and image
empty), ``fail`` (non-zero exit), ``kill`` (killed by SIGKILL).

Every exec'd process gets an argv of its own (``/bin/true TAG-<tag>-<i>``; ``sleep`` takes a
unique number instead), so that a monitor reporting the command line of another process, or
the parent's, cannot score; ``image`` is the absolute path the kernel runs (``/bin`` may be a
symlink: ``/usr/bin/true``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

TRUE = "/bin/true"
FALSE = "/bin/false"
SLEEP = "/bin/sleep"

#: The mixed storm cycles through these (one in four of each).
MIXED = ("spawn", "fork", "fail", "kill")


def _wait_asleep(pid: int, timeout: float = 2.0) -> None:
    """Until the child sleeps in ``sleep``: its exec has finished (and been reported).

    posix_spawn returns as soon as the exec has released the parent's memory, before the
    kernel reports the exec; a SIGKILL sent then ends the process without an exec event.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"S":
                return
        time.sleep(0)


def argv_for(kind: str, tag: str, i: int) -> list[str]:
    """The unique argv of the i-th process (empty for a fork without exec)."""
    if kind == "spawn":
        return [TRUE, f"TAG-{tag}-{i}"]
    if kind == "fail":
        return [FALSE, f"TAG-{tag}-{i}"]
    if kind == "kill":  # sleep sums its arguments: 30 s plus a unique fraction
        return [SLEEP, "30", f"0.{tag}{i:07d}"]
    return []


def spawn_one(kind: str, argv: list[str], env: dict[str, str]) -> tuple[int, int]:
    """Start one process of the given kind, reap it; (pid, raw wait status)."""
    if kind in ("spawn", "fail"):
        pid = os.posix_spawn(argv[0], argv, env)
    elif kind == "fork":
        pid = os.fork()
        if pid == 0:
            os._exit(7)  # a forked worker that never execs
    elif kind == "kill":
        pid = os.posix_spawn(argv[0], argv, env)
        _wait_asleep(pid)
        os.kill(pid, signal.SIGKILL)
    else:
        raise ValueError(kind)
    _, status = os.waitpid(pid, 0)
    return pid, status


def storm(count: int, mode: str, interval: float = 0.0, tag: str = "0") -> dict[str, object]:
    env = {"PATH": "/usr/bin:/bin"}
    kinds = MIXED if mode == "mixed" else ("spawn",)
    argvs = [argv_for(kinds[i % len(kinds)], tag, i) for i in range(count)]
    images = {p: os.path.realpath(p) for p in (TRUE, FALSE, SLEEP)}
    procs: list[tuple[int, int, str, list[str], str]] = []
    append = procs.append
    start = time.monotonic_ns()
    for i in range(count):
        kind, argv = kinds[i % len(kinds)], argvs[i]
        pid, status = spawn_one(kind, argv, env)
        append((pid, status, kind, argv, images[argv[0]] if argv else ""))
        if interval:
            time.sleep(interval)
    end = time.monotonic_ns()
    return {"start_ns": start, "end_ns": end, "procs": procs}


def main() -> None:
    count, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    tag = sys.argv[5] if len(sys.argv) > 5 else "0"
    print("ready", flush=True)
    sys.stdin.readline()
    result = storm(count, mode, interval, tag)
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
