"""Loading, attaching and unloading procobsrv's eBPF program through libbpf.

Every failure becomes a MonitorError naming the cause and the remedy: libbpf missing, no
permission, no BTF in the kernel, or the verifier's refusal (its log kept in a file).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from pathlib import Path

from ..errors import MonitorError
from . import libbpf
from .ebpf_abi import OBJECT_PATH, po_drops, po_settings
from .libbpf import Libbpf, LibbpfError
from .privilege import ebpf_refused
from .ringbuf import map_shared, unmap
from .sync import NO_FDS, out_of_fds

BTF_PATH = Path("/sys/kernel/btf/vmlinux")
#: The program's functions (bpftool lists them under these names).
PROGRAM_NAMES = ("on_fork", "on_exec", "on_exit")


class BpfProgram:
    """The loaded object: its maps' fds and its attached links, until :meth:`close`."""

    def __init__(
        self,
        *,
        ring_size: int,
        settings: po_settings,
        object_path: Path = OBJECT_PATH,
        lib: Libbpf | None = None,
    ) -> None:
        self._ring_size = ring_size
        self._settings = settings
        self._object_path = object_path
        self._lib = lib
        self._obj: int | None = None
        self._links: list[int] = []
        self.events_fd = -1
        self._drops_fd = -1
        self._cpus = 0
        self._drops_buf: ctypes.Array[po_drops] | None = None
        self._bss = 0
        #: the program's ``dropped`` word (.bss, mmapped): all failed writes, read without a syscall
        self._dropped: ctypes.c_uint64 | None = None
        self._drops_seen = 0
        self._drops_total = 0

    def open(self) -> None:
        """Load the object and attach its programs; on failure nothing stays loaded."""
        if self._obj is not None:
            raise MonitorError("the eBPF program is already loaded")
        if not BTF_PATH.exists():
            raise MonitorError(libbpf.NO_BTF)
        try:
            data = self._object_path.read_bytes()
        except OSError as exc:
            if exc.errno in NO_FDS:
                raise out_of_fds("the eBPF object's file", exc) from exc
            raise MonitorError(
                f"the eBPF object {self._object_path} is unreadable ({exc}): reinstall "
                f"procobsrv, or rebuild it with `make -C bpf`"
            ) from exc
        lib = self._lib = self._lib or libbpf.api()
        try:
            self._load(lib, data)
        except BaseException:
            self.close()
            raise

    def _load(self, lib: Libbpf, data: bytes) -> None:
        buf = ctypes.create_string_buffer(data, len(data))
        with libbpf.captured() as lines:
            try:
                self._obj = lib.bpf_object__open_mem(buf, len(data), None)
                events = lib.bpf_object__find_map_by_name(self._obj, b"events")
                lib.bpf_map__set_max_entries(events, self._ring_size)
                lib.bpf_object__load(self._obj)
            except LibbpfError as exc:
                raise _explain(exc, lines) from exc
        self.events_fd = lib.bpf_map__fd(events)
        self._drops_fd = lib.bpf_map__fd(lib.bpf_object__find_map_by_name(self._obj, b"drops"))
        zero = ctypes.c_uint32(0)
        settings_fd = lib.bpf_map__fd(lib.bpf_object__find_map_by_name(self._obj, b"settings"))
        lib.bpf_map_update_elem(settings_fd, ctypes.byref(zero), ctypes.byref(self._settings), 0)
        self._cpus = lib.libbpf_num_possible_cpus()
        bss_fd = lib.bpf_map__fd(lib.bpf_object__find_map_by_name(self._obj, b".bss"))
        self._bss = map_shared(mmap.PAGESIZE, mmap.PROT_READ, bss_fd, 0)
        self._dropped = ctypes.c_uint64.from_address(self._bss)  # .bss holds only `dropped`
        self._drops_buf = (po_drops * self._cpus)()
        with libbpf.captured() as lines:
            prog = lib.bpf_object__next_program(self._obj, None)
            while prog:
                try:
                    self._links.append(lib.bpf_program__attach(prog))
                except LibbpfError as exc:
                    raise _explain(exc, lines) from exc
                prog = lib.bpf_object__next_program(self._obj, prog)

    def drops(self) -> int:
        """Records the program could not write since it was loaded (all CPUs, all kinds).

        Costs one memory read while nothing was dropped: the per-CPU counters (a syscall)
        are read only when the program's ``dropped`` word says a drop happened since.
        """
        dropped = self._dropped
        if dropped is None:
            return 0
        seen = dropped.value
        if seen != self._drops_seen:
            self._drops_seen = seen  # read before the counters: the program adds after them
            self._drops_total = self._count_drops()
        return self._drops_total

    def _count_drops(self) -> int:
        buf, lib = self._drops_buf, self._lib
        if buf is None or lib is None:
            return 0
        zero = ctypes.c_uint32(0)
        lib.bpf_map_lookup_elem(self._drops_fd, ctypes.byref(zero), buf)
        return sum(d.fork + d.exec + d.exit for d in buf)

    def close(self) -> None:
        """Detach and unload everything; safe twice."""
        lib = self._lib
        links, self._links = self._links, []
        obj, self._obj = self._obj, None
        self.events_fd = self._drops_fd = -1
        self._drops_buf = None
        self._dropped = None
        self._drops_seen = self._drops_total = 0  # a program loaded again counts from zero
        bss, self._bss = self._bss, 0
        if bss:
            unmap(bss, mmap.PAGESIZE)
        if lib is None:
            return
        for link in links:
            lib.bpf_link__destroy(link)
        if obj:
            lib.bpf_object__close(obj)


def _explain(exc: LibbpfError, lines: list[str]) -> MonitorError:
    """The MonitorError that says what to do about a failed libbpf call."""
    err = exc.errno
    if err in NO_FDS:
        return out_of_fds(f"the eBPF program ({exc.function})", OSError(err, os.strerror(err)))
    if err in (errno.EPERM, errno.EACCES) and not _verifier_spoke(lines):
        return ebpf_refused(f"{exc.function}: {os.strerror(err)}")
    if exc.function in ("bpf_object__load", "bpf_program__attach"):
        path = libbpf.write_log(lines)
        return MonitorError(
            libbpf.REJECTED.format(what=exc.function, error=os.strerror(err), log_path=path)
        )
    return MonitorError(f"{exc} while loading the eBPF program; use source='connector'")


def _verifier_spoke(lines: list[str]) -> bool:
    return any("PROG LOAD LOG" in line or "processed " in line for line in lines)
