"""What the eBPF decoder costs per many-argument exec: this tree's decoder against another
tree's, in turns (issue 22, item 10).

Run as ``python -m benchmarks.decode_cost [--other /path/to/other/checkout] [--args 2000]
[--processes 4000] [--reps 5] [--cpu 1]``. Each run is a process importing procobsrv from
one tree's ``src``: it builds, with that tree's own ``ebpf_abi.po_event``, the records the
kernel program writes for ``--processes`` processes (an exec of ``--args`` one-digit
arguments, then the exit), and decodes them as the monitor does, 64 records per read,
twice: with that argv, and with one argument. It prints CPU microseconds per exec+exit
pair, the extra nanoseconds per argv byte (the difference between the two, over the argv's
bytes) and how many such processes per CPU-second the decoder alone can take. The trees
alternate run by run; the medians close the output. No kernel, no root.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from statistics import median

from .harness import PY, ROOT

#: One run, in a process importing procobsrv from the tree under test: prints JSON.
WORKER = """
import json, sys, time
from procobsrv.linux.ebpf_abi import HEADER_SIZE, PO_EXEC, PO_EXIT, po_event
from procobsrv.linux.ebpf_decoder import Decoder

argc, processes = int(sys.argv[1]), int(sys.argv[2])
READ = 64  # records per read of the ring

def records(argc):
    args = b"".join(b"%d\\0" % (i % 10) for i in range(argc))
    image = b"/usr/bin/true"
    out = []
    for pid in range(1000, 1000 + processes):
        for kind in (PO_EXEC, PO_EXIT):
            data = args + image if kind == PO_EXEC else b""
            header = po_event(
                kind=kind, pid=pid, ppid=1, ts_ns=pid, start_ns=pid, args_size=len(args),
                args_len=len(args) if kind == PO_EXEC else 0,
                image_len=len(image) if kind == PO_EXEC else 0, comm=b"true",
            )
            out.append(bytes(header) + data)
    return out, len(args)

def reads(recs):
    for at in range(0, len(recs), READ):
        chunk = recs[at : at + READ]
        spans, offset = [], 0
        for r in chunk:
            spans.append((offset, len(r)))
            offset += len(r)
        yield b"".join(chunk), spans

def cost(argc):
    data, argv_bytes = records(argc)
    batches = list(reads(data))
    decoder = Decoder()
    out = []
    for data, spans in batches[:4]:  # warm: comm and cgroup caches
        decoder.decode(data, spans, out)
    decoder = Decoder()
    out = []
    start = time.process_time()
    for data, spans in batches:
        decoder.decode(data, spans, out)
    cpu = time.process_time() - start
    assert len(out) == 2 * processes and decoder.bad == 0, (len(out), decoder.bad)
    assert len(out[0].command_line) == argc
    return cpu / processes, argv_bytes

many, argv_bytes = cost(argc)
one, _ = cost(1)
print(json.dumps({
    "us_per_process": many * 1e6,
    "us_per_process_one_argument": one * 1e6,
    "ns_per_argv_byte": (many - one) * 1e9 / (argv_bytes - 2),
    "processes_per_cpu_s": 1 / many,
}))
"""


def measure(src: Path, argc: int, processes: int, cpu: int | None) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)
    command = [PY, "-c", WORKER, str(argc), str(processes)]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.decode_cost", description=__doc__)
    p.add_argument("--other", type=Path, help="the checkout to compare with")
    p.add_argument("--args", type=int, default=2000, help="arguments of each exec")
    p.add_argument("--processes", type=int, default=4000, help="exec+exit pairs per run")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--cpu", type=int, help="pin each run to this CPU (taskset)")
    args = p.parse_args(argv)
    trees = {"this": ROOT / "src"}
    if args.other is not None:
        trees["other"] = args.other.resolve() / "src"
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for rep in range(args.reps):
        order = list(trees.items())
        for name, src in order if rep % 2 == 0 else order[::-1]:
            figures = measure(src, args.args, args.processes, args.cpu)
            runs[name].append(figures)
            print(
                f"run {rep + 1} {name:5}: {figures['us_per_process']:8.1f} us per process, "
                f"{figures['ns_per_argv_byte']:6.1f} ns per argv byte",
                flush=True,
            )
    print(
        f"medians of {args.reps} ({args.args} arguments, {args.processes} processes, "
        "exec + exit each, CPU time):"
    )
    for name, rs in runs.items():
        m = {key: median(r[key] for r in rs) for key in rs[0]}
        print(
            f"  {name:5} {m['us_per_process']:8.1f} us per process "
            f"({m['us_per_process_one_argument']:.1f} with one argument), "
            f"{m['ns_per_argv_byte']:6.1f} ns per argv byte, "
            f"{m['processes_per_cpu_s']:8,.0f} processes per CPU-second"
        )
    if "other" in runs:
        this, other = (median(r["ns_per_argv_byte"] for r in runs[n]) for n in ("this", "other"))
        print(f"  per argv byte: this / other = {this / other:.2f}")


if __name__ == "__main__":
    main()
