"""Loading, attaching and unloading procobsrv's eBPF program through libbpf.

Every failure becomes a MonitorError naming the cause and the remedy: libbpf missing, no
permission, no BTF in the kernel, or the verifier's refusal (its log kept in a file).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import MonitorError
from . import btf, libbpf
from .ebpf_abi import DROPPED, OBJECT_PATH, SETTINGS, po_drops
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
        settings: Mapping[str, int],
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
        self._bss = (0, 0)  # our mapping of the program's .bss: address, length
        #: the program's ``dropped`` word (in .bss): all failed writes, read without a syscall
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

    @property
    def lib(self) -> Libbpf:
        """The libbpf the program was loaded with."""
        if self._lib is None:
            raise MonitorError("the eBPF program is not loaded")
        return self._lib

    def _load(self, lib: Libbpf, data: bytes) -> None:
        buf = ctypes.create_string_buffer(data, len(data))
        with libbpf.captured() as lines:
            try:
                obj = self._obj = lib.bpf_object__open_mem(buf, len(data), None)
                events = lib.bpf_object__find_map_by_name(obj, b"events")
                lib.bpf_map__set_max_entries(events, self._ring_size)
                self._set_rodata(lib, obj)
                lib.bpf_object__load(obj)
            except LibbpfError as exc:
                raise _explain(exc, lines) from exc
        self.events_fd = lib.bpf_map__fd(events)
        self._drops_fd = lib.bpf_map__fd(lib.bpf_object__find_map_by_name(obj, b"drops"))
        self._cpus = lib.libbpf_num_possible_cpus()
        self._dropped = ctypes.c_uint64.from_address(self._map_global(lib, obj, DROPPED))
        self._drops_buf = (po_drops * self._cpus)()
        with libbpf.captured() as lines:
            prog = lib.bpf_object__next_program(self._obj, None)
            while prog:
                try:
                    self._links.append(lib.bpf_program__attach(prog))
                except LibbpfError as exc:
                    raise _explain(exc, lines) from exc
                prog = lib.bpf_object__next_program(self._obj, prog)

    def _set_rodata(self, lib: Libbpf, obj: int) -> None:
        """Write the settings into .rodata's initial value, each variable found by name.

        The kernel then sees them as constants: the program reads no map for them."""
        variables = btf.section_variables(lib, obj, ".rodata")
        rodata = lib.bpf_object__find_map_by_name(obj, b".rodata")
        size = ctypes.c_size_t()
        image = bytearray(ctypes.string_at(lib.bpf_map__initial_value(rodata, size), size.value))
        settings = {"exit_group_dead": int(exit_passes_group_dead(lib)), **self._settings}
        for name, value in settings.items():
            btf.find(variables, name, ".rodata", SETTINGS[name]).write(image, value)
        lib.bpf_map__set_initial_value(rodata, bytes(image), len(image))
        if settings["exit_group_dead"]:  # the older kernels' exit hash goes unused
            lib.bpf_map__set_max_entries(lib.bpf_object__find_map_by_name(obj, b"exits_sent"), 1)

    def _map_global(self, lib: Libbpf, obj: int, name: str) -> int:
        """Map the loaded program's .bss (read-only) and return where its u64 ``name`` is.

        (libbpf 1.1 maps .bss onto the kernel's map only for skeletons: its initial value
        stays a private copy after load.)"""
        var = btf.find(btf.section_variables(lib, obj, ".bss"), name, ".bss", 8)
        bss = lib.bpf_object__find_map_by_name(obj, b".bss")
        size = ctypes.c_size_t()
        lib.bpf_map__initial_value(bss, size)
        if var.offset + var.size > size.value:
            raise MonitorError(f"the eBPF program's {name} lies outside its .bss")
        length = -(-size.value // mmap.PAGESIZE) * mmap.PAGESIZE
        self._bss = (map_shared(length, mmap.PROT_READ, lib.bpf_map__fd(bss), 0), length)
        return self._bss[0] + var.offset

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
        (bss, length), self._bss = self._bss, (0, 0)
        if bss:
            unmap(bss, length)
        if lib is None:
            return
        for link in links:
            lib.bpf_link__destroy(link)
        if obj:
            lib.bpf_object__close(obj)


_group_dead: list[bool] = []  # the kernel's answer, asked once per process


def exit_passes_group_dead(lib: Libbpf) -> bool:
    """Whether sched_process_exit passes (task, group_dead): reading the kernel's BTF takes
    about 13 ms, so the answer is kept."""
    if not _group_dead:
        _group_dead.append(btf.tracepoint_arguments(lib, "sched_process_exit") == 2)
    return _group_dead[0]


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
