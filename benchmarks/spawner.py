"""One storm worker: starts and reaps short processes as fast as it can; records the truth.

Run as ``python -m benchmarks.spawner COUNT MODE OUT``; prints ``ready``, waits for a line on
stdin (the start signal, so that K workers start together), then writes JSON to OUT:
``{"start_ns", "end_ns", "procs": [[pid, wait_status, kind], ...]}``. Kinds: ``spawn`` (fork +
exec + exit), ``fork`` (fork without exec: fork + exit), ``fail`` (non-zero exit), ``kill``
(killed by SIGKILL).
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


def spawn_one(kind: str, env: dict[str, str]) -> tuple[int, int]:
    """Start one process of the given kind, reap it; (pid, raw wait status)."""
    if kind == "spawn":
        pid = os.posix_spawn(TRUE, [TRUE], env)
    elif kind == "fail":
        pid = os.posix_spawn(FALSE, [FALSE], env)
    elif kind == "fork":
        pid = os.fork()
        if pid == 0:
            os._exit(7)  # a forked worker that never execs
    elif kind == "kill":
        pid = os.posix_spawn(SLEEP, [SLEEP, "30"], env)
        _wait_asleep(pid)
        os.kill(pid, signal.SIGKILL)
    else:
        raise ValueError(kind)
    _, status = os.waitpid(pid, 0)
    return pid, status


def storm(count: int, mode: str, interval: float = 0.0) -> dict[str, object]:
    env = {"PATH": "/usr/bin:/bin"}
    kinds = MIXED if mode == "mixed" else ("spawn",)
    procs: list[tuple[int, int, str]] = []
    append = procs.append
    start = time.monotonic_ns()
    for i in range(count):
        kind = kinds[i % len(kinds)]
        pid, status = spawn_one(kind, env)
        append((pid, status, kind))
        if interval:
            time.sleep(interval)
    end = time.monotonic_ns()
    return {"start_ns": start, "end_ns": end, "procs": procs}


def main() -> None:
    count, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    print("ready", flush=True)
    sys.stdin.readline()
    result = storm(count, mode, interval)
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
