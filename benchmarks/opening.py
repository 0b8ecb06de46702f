"""How long opening a Linux source takes (for the eBPF source: load, verify and attach).

Run as ``python -m benchmarks.opening SOURCE N``: opens and closes a fresh source N times in
this process (the first one pays for loading libbpf and the object) and prints one JSON line:
``{"source", "n", "first_ms", "median_ms", "max_ms"}``, or ``{"source", "unavailable": why}``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from procobsrv import MonitorError

from .listener import new_source


def main() -> None:
    name, n = sys.argv[1], int(sys.argv[2])
    times: list[float] = []
    for _ in range(n):
        try:
            source = new_source(name)
            t0 = time.perf_counter()
            source.open()
            times.append((time.perf_counter() - t0) * 1e3)
        except MonitorError as exc:
            print(json.dumps({"source": name, "unavailable": str(exc)}))
            return
        source.close()
    print(
        json.dumps(
            {
                "source": name,
                "n": n,
                "first_ms": times[0],
                "median_ms": statistics.median(times),
                "max_ms": max(times),
            }
        )
    )


if __name__ == "__main__":
    main()
