"""What the kernel allows a process, asked of the kernel itself, not of procobsrv.

Whether a user may join the process-events group, or load a tracing program, depends on the
kernel's build and the process's capabilities, not on ``uname -r``. A test that depends on
it runs :func:`probe` under the same prefix (setpriv, unshare) as the process it tests, and
then expects what goes with the answer. The probe uses raw system calls only (socket, bind,
send, poll; bpf(BPF_PROG_LOAD)), so it cannot share a mistake with the code under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from tests.fakes.availability import require_tool, unavailable

NOBODY = 65534
OK = "ok"

_PROBE = r"""
import ctypes, errno, json, os, platform, select, socket, struct

def connector():
    # netlink, the connector's protocol and group, then one subscription and its ack
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 11)  # NETLINK_CONNECTOR
    except OSError as exc:
        return "socket: " + errno.errorcode[exc.errno]
    with sock:
        try:
            sock.bind((0, 1))  # CN_IDX_PROC
        except OSError as exc:
            return "bind: " + errno.errorcode[exc.errno]
        ack = 0x5EED
        cn_msg = struct.pack("=IIIIHH", 1, 1, 0, ack, 4, 0) + struct.pack("=I", 1)  # LISTEN
        header = struct.pack("=IHHII", 16 + len(cn_msg), 3, 0, 0, os.getpid())  # NLMSG_DONE
        try:
            sock.send(header + cn_msg)
        except OSError as exc:
            return "send: " + errno.errorcode[exc.errno]
        deadline = 2.0
        while select.select([sock], [], [], deadline)[0]:
            data = sock.recv(65536)
            seq, cn_ack = struct.unpack_from("=II", data, 16 + 8)
            what, = struct.unpack_from("=I", data, 36)
            if what == 0 and cn_ack == ack + 1:  # PROC_EVENT_NONE: our ack
                err, = struct.unpack_from("=I", data, 52)
                return OK if err == 0 else "ack: " + errno.errorcode.get(err, str(err))
        return "no ack"

def ebpf():
    # the smallest tracing program: r0 = 0; exit. The kernel asks CAP_BPF + CAP_PERFMON
    # (or CAP_SYS_ADMIN) of every tracing program type, procobsrv's tp_btf ones included.
    number = {"x86_64": 321, "aarch64": 280}[platform.machine()]
    insns = struct.pack("<BBhiBBhi", 0xB7, 0, 0, 0, 0x95, 0, 0, 0)
    license = ctypes.create_string_buffer(b"GPL")
    insns_buf = ctypes.create_string_buffer(insns, len(insns))
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<IIQQ", attr, 0, 5, 2, ctypes.addressof(insns_buf),  # TRACEPOINT
                     ctypes.addressof(license))
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(number, 5, attr, 128)  # BPF_PROG_LOAD
    if fd < 0:
        return "bpf: " + errno.errorcode[ctypes.get_errno()]
    os.close(fd)
    return OK

OK = "ok"
print(json.dumps({"connector": connector(), "ebpf": ebpf()}))
"""


@dataclass(frozen=True)
class Allowed:
    """What the kernel answered: "ok", or the step and errno that failed ("bind: EPERM")."""

    connector: str
    ebpf: str


def probe(*prefix: str) -> Allowed:
    """Ask the kernel, as a process started with ``prefix``, what it may listen to."""
    run = subprocess.run(
        [*prefix, sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
    return Allowed(**json.loads(run.stdout))


def as_user(uid: int = NOBODY) -> list[str]:
    """The prefix that runs a command as ``uid`` with no group and no capability; the test
    fails in CI (skips elsewhere) where that user cannot read the venv or the checkout."""
    if os.geteuid() != 0:
        unavailable(f"needs root to become uid {uid}")
    prefix = [require_tool("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    readable = subprocess.run(
        [*prefix, sys.executable, "-c", "import procobsrv, tests"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    if readable.returncode != 0:
        unavailable(f"uid {uid} cannot read the venv or the checkout: {readable.stderr}")
    return prefix
