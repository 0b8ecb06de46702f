"""What a Python user writes today: poll ``psutil.pids()`` every 10 ms.

Run as ``python -m benchmarks.poller OUT``; prints ``ready``; on SIGTERM writes JSON to OUT:
``{"seen": [pid...], "gone": [pid...]}`` (pids seen at some poll; pids seen, then missing).
"""

from __future__ import annotations

import json
import signal
import sys
import time

import psutil

INTERVAL = 0.010


def main() -> None:
    out = sys.argv[1]
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    seen: set[int] = set()
    gone: set[int] = set()
    previous = set(psutil.pids())
    seen |= previous
    print("ready", flush=True)
    while running[0]:
        time.sleep(INTERVAL)
        now = set(psutil.pids())
        seen |= now
        gone |= previous - now
        previous = now
    with open(out, "w") as f:
        json.dump({"seen": sorted(seen), "gone": sorted(gone)}, f)


if __name__ == "__main__":
    main()
