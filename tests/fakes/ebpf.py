"""The eBPF source for tests: a scope on it that sees only our children, ring buffer records
as the kernel program writes them, an already opened source handed to a scope."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from procobsrv import ApplicationScope, EventKind, QueuedItem
from procobsrv.linux import EbpfSource
from procobsrv.linux.ebpf_abi import po_event
from procobsrv.platform import Batch, KernelSource
from tests.fakes.availability import require_ebpf
from tests.fakes.collector import Collector


@contextmanager
def ebpf_monitoring(**kw: Any) -> Iterator[Collector]:
    """ApplicationScope on an EbpfSource that reports only this process's children."""
    require_ebpf()
    handler = Collector()
    scope = ApplicationScope.get_instance(handler)
    assert scope.start_monitoring(source=EbpfSource(parent_filter=os.getpid(), **kw))
    try:
        yield handler
    finally:
        scope.stop_monitoring()


def run_child(argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(argv, **kw)
    child.wait()
    return child


def events(handler: Collector, pid: int, kind: EventKind) -> list[QueuedItem]:
    handler.wait_exit(pid)
    return handler.of(pid, kind)


class AlreadyOpen(KernelSource):
    """An opened source handed to ApplicationScope as it is (its events waited meanwhile)."""

    def __init__(self, inner: KernelSource) -> None:
        self.inner = inner

    def open(self) -> None:
        pass

    @property
    def wait_handle(self) -> int:
        return self.inner.wait_handle

    def fetch_batch(self) -> Batch:
        return self.inner.fetch_batch()

    def close(self) -> None:
        self.inner.close()


def record(
    kind: int,
    pid: int = 100,
    *,
    ppid: int = 1,
    start_ns: int = 5,
    args: bytes = b"",
    image: bytes = b"",
    script: bytes = b"",
    cwd: bytes = b"",
    cgroup: bytes = b"",
    cgroup_id: int = 7,
    flags: int = 0,
    status: int = 0,
    args_size: int | None = None,
    creator: int | None = None,
    namespaces: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> bytes:
    """One ring buffer sample as the kernel program writes it (bpf/procobsrv.h): an event,
    or with PO_CGROUP the path (``cgroup``) of the events' ``cgroup_id``. A fork's
    ``creator`` is its parent unless given (clone(CLONE_PARENT)). ``namespaces``: ns_pid,
    ns_ppid, pid_ns, mnt_ns (0: the kernel could not read them)."""
    ns_pid, ns_ppid, pid_ns, mnt_ns = namespaces
    header = po_event(
        kind=kind,
        flags=flags,
        pid=pid,
        ppid=ppid,
        ts_ns=1_000,
        start_ns=start_ns,
        cgroup_id=cgroup_id,
        exit_status=status,
        args_size=len(args) if args_size is None else args_size,
        args_len=len(args),
        image_len=len(image),
        script_len=len(script),
        cwd_len=len(cwd),
        cgroup_len=len(cgroup),
        comm=b"comm",
        creator=ppid if creator is None else creator,
        ns_pid=ns_pid,
        ns_ppid=ns_ppid,
        pid_ns=pid_ns,
        mnt_ns=mnt_ns,
    )
    return bytes(header) + args + image + script + cwd + cgroup
