"""What a Python user writes today: poll ``psutil.pids()`` every 10 ms.

Run as ``python -m benchmarks.poller OUT``; prints ``ready``; on SIGTERM writes JSON to OUT:
``{"seen": [pid...], "gone": [pid...], "identity": [[pid, argv, exe], ...]}`` (pids seen at
some poll; pids seen, then missing; for each new pid its ``cmdline()`` and ``exe()``, asked
at once, when it was still there to answer).
"""

from __future__ import annotations

import json
import signal
import sys
import time

import psutil

INTERVAL = 0.010


def identify(pid: int) -> tuple[int, list[str], str] | None:
    try:
        proc = psutil.Process(pid)
        return pid, proc.cmdline(), proc.exe()
    except psutil.Error:
        return None  # gone (or a kernel thread) before it could answer


def main() -> None:
    out = sys.argv[1]
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    seen: set[int] = set()
    gone: set[int] = set()
    identity = []
    previous = set(psutil.pids())
    seen |= previous
    print("ready", flush=True)
    while running[0]:
        time.sleep(INTERVAL)
        now = set(psutil.pids())
        identity.extend(filter(None, map(identify, now - seen)))
        seen |= now
        gone |= previous - now
        previous = now
    with open(out, "w") as f:
        json.dump({"seen": sorted(seen), "gone": sorted(gone), "identity": identity}, f)


if __name__ == "__main__":
    main()
