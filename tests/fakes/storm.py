"""A process storm with a recorded ground truth: the pids of every child it spawned."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

_SPAWNER = r"""
import json, os, sys, time
n, seconds = int(sys.argv[1]), float(sys.argv[2])
pids, end = [], time.monotonic() + seconds
while len(pids) < n and time.monotonic() < end:
    pid = os.posix_spawn("/bin/true", ["/bin/true"], {})
    os.waitpid(pid, 0)
    pids.append(pid)
json.dump(pids, sys.stdout)
"""


class Storm:
    """``spawners`` processes each posix_spawn + wait ``/bin/true`` as fast as they can.

    Each child gives exactly three events (fork, exec, exit); the pids are the ground truth.
    """

    def __init__(self, spawners: int = 2, per_spawner: int = 1500, seconds: float = 10.0) -> None:
        # The pid lists go to files, not pipes: a fast machine spawns more pids than a pipe
        # holds, and a spawner blocked on its final write would never end.
        self._outs = [tempfile.TemporaryFile("w+") for _ in range(spawners)]  # noqa: SIM115
        cmd = [sys.executable, "-c", _SPAWNER, str(per_spawner), str(seconds)]
        self._procs = [subprocess.Popen(cmd, stdout=out) for out in self._outs]
        self.pids: set[int] = set()
        self.per_spawner: list[list[int]] = []  # in spawn order

    def running(self) -> bool:
        return any(proc.poll() is None for proc in self._procs)

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()

    def wait(self, timeout: float = 60.0) -> set[int]:
        for proc, out in zip(self._procs, self._outs, strict=True):
            proc.wait(timeout=timeout)
            out.seek(0)
            data = out.read()
            out.close()
            if data:
                self.per_spawner.append(json.loads(data))
                self.pids.update(self.per_spawner[-1])
        return self.pids

    @property
    def spawner_pids(self) -> set[int]:
        return {proc.pid for proc in self._procs}
