"""Every libbpf function procobsrv calls, declared once as data, and what their failures mean.

Only symbols that libbpf 1.1 (Debian 12) and 1.5 (Debian 13) both export are used. Each
:class:`Binding` names the function, its result and argument types and how it reports
failure; :func:`api` applies the table to ``libbpf.so.1``. A failure raises
:class:`~procobsrv.errors.MonitorError` saying what to do.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import MonitorError
from . import libc

log = logging.getLogger(__name__)

SONAME = "libbpf.so.1"
ptr, c_int, c_size, c_str = ctypes.c_void_p, ctypes.c_int32, ctypes.c_size_t, ctypes.c_char_p

NOT_INSTALLED = (
    "the eBPF source needs libbpf ({soname}: {error}): install the package libbpf1 "
    "(Debian/Ubuntu; libbpf on Fedora/Arch), or use source='connector'"
)
NO_BTF = (
    "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing): the eBPF source needs a "
    "kernel built with CONFIG_DEBUG_INFO_BTF=y (5.17 or newer); use source='connector'"
)
REJECTED = (
    "the kernel refused the eBPF program ({what}: {error}); libbpf's log, with the "
    "verifier's, is in {log_path}. A kernel older than 5.17 lacks bpf_loop; use "
    "source='connector'"
)

PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_str, ptr)  # (level, fmt, va_list)
#: ring_buffer_sample_fn: (ctx, data, size) -> 0 to go on, < 0 to stop after this record
SAMPLE_FN = ctypes.CFUNCTYPE(c_int, ptr, ptr, c_size)


class Check(enum.Enum):
    """How a libbpf function reports failure (as winapi.Check for Win32)."""

    NULL = "result is NULL; errno holds the reason"
    NEGATIVE = "result < 0 is -errno"
    NEVER = "cannot fail"


@dataclass(frozen=True)
class Binding:
    """One libbpf function: name, result type, argument types, how it fails."""

    name: str
    restype: Any
    argtypes: Sequence[Any]
    fails: Check = Check.NEVER


BINDINGS: tuple[Binding, ...] = (
    Binding("libbpf_set_print", ptr, (PRINT_FN,)),
    Binding("libbpf_num_possible_cpus", c_int, (), Check.NEGATIVE),
    Binding("bpf_object__open_mem", ptr, (ptr, c_size, ptr), Check.NULL),
    Binding("bpf_object__load", c_int, (ptr,), Check.NEGATIVE),
    Binding("bpf_object__close", None, (ptr,)),
    Binding("bpf_object__find_map_by_name", ptr, (ptr, c_str), Check.NULL),
    Binding("bpf_object__next_program", ptr, (ptr, ptr)),
    Binding("bpf_object__btf", ptr, (ptr,), Check.NULL),
    Binding("btf__load_vmlinux_btf", ptr, (), Check.NULL),
    Binding("btf__free", None, (ptr,)),
    Binding("btf__find_by_name_kind", c_int, (ptr, c_str, ctypes.c_uint32), Check.NEGATIVE),
    Binding("btf__type_by_id", ptr, (ptr, ctypes.c_uint32), Check.NULL),
    Binding("btf__name_by_offset", c_str, (ptr, ctypes.c_uint32), Check.NULL),
    Binding("bpf_map__initial_value", ptr, (ptr, ctypes.POINTER(c_size)), Check.NULL),
    Binding("bpf_map__set_initial_value", c_int, (ptr, ptr, c_size), Check.NEGATIVE),
    Binding("bpf_map__set_max_entries", c_int, (ptr, ctypes.c_uint32), Check.NEGATIVE),
    Binding("bpf_map__fd", c_int, (ptr,), Check.NEGATIVE),
    Binding("bpf_program__attach", ptr, (ptr,), Check.NULL),
    Binding("bpf_link__destroy", c_int, (ptr,), Check.NEGATIVE),
    Binding("bpf_map_lookup_elem", c_int, (c_int, ptr, ptr), Check.NEGATIVE),
    Binding("bpf_map_update_elem", c_int, (c_int, ptr, ptr, ctypes.c_uint64), Check.NEGATIVE),
    Binding("ring_buffer__new", ptr, (c_int, SAMPLE_FN, ptr, ptr), Check.NULL),
    # < 0 also when a callback stopped it: the caller tells the two apart
    Binding("ring_buffer__consume", c_int, (ptr,)),
    Binding("ring_buffer__free", None, (ptr,)),
)


class LibbpfError(MonitorError):
    """A libbpf call failed; ``errno`` says why."""

    def __init__(self, function: str, err: int) -> None:
        super().__init__(f"{function} failed: {os.strerror(err)}")
        self.function = function
        self.errno = err


def _errcheck(binding: Binding) -> Callable[..., Any]:
    fails = binding.fails

    def check(result: Any, func: Any, args: Any) -> Any:
        if fails is Check.NULL and not result:
            raise LibbpfError(binding.name, ctypes.get_errno() or errno.EINVAL)
        if fails is Check.NEGATIVE and result < 0:
            raise LibbpfError(binding.name, -result)
        return result

    return check


class Libbpf:
    """libbpf's functions as attributes, each raising LibbpfError on failure."""

    def __init__(self, lib: Any) -> None:
        for b in BINDINGS:
            func = getattr(lib, b.name)
            func.restype = b.restype
            func.argtypes = list(b.argtypes)
            if b.fails is not Check.NEVER:
                func.errcheck = _errcheck(b)
            setattr(self, b.name, func)

    def __getattr__(self, name: str) -> Any:  # for mypy: the bound functions above
        raise AttributeError(name)


_lock = threading.Lock()
_api: list[Libbpf] = []


def api() -> Libbpf:
    """libbpf, loaded once; MonitorError naming the package when it is not installed."""
    with _lock:
        if not _api:
            try:
                lib = ctypes.CDLL(SONAME, use_errno=True)
            except OSError as exc:
                raise MonitorError(NOT_INSTALLED.format(soname=SONAME, error=exc)) from exc
            _api.append(Libbpf(lib))
            _api[0].libbpf_set_print(_print_callback)
        return _api[0]


# -- libbpf's messages ------------------------------------------------------------------
# libc.vasprintf sizes its buffer itself: a va_list can be used only once, and the
# verifier's log arrives as one long %s.

_capture = threading.local()


def _print(level: int, fmt: bytes, args: int) -> int:
    out = ctypes.c_void_p()
    n = libc.vasprintf(ctypes.byref(out), fmt, args)
    if n < 0 or not out.value:
        return 0
    try:
        text = ctypes.string_at(out.value, n).decode(errors="replace")
    finally:
        libc.free(out)
    lines: list[str] | None = getattr(_capture, "lines", None)
    if lines is not None:
        lines.append(text)
    log.debug("libbpf: %s", text.rstrip())
    return int(n)


_print_callback = PRINT_FN(_print)  # kept alive here: libbpf holds the pointer


@contextmanager
def captured() -> Iterator[list[str]]:
    """libbpf's messages printed by this thread meanwhile (the verifier's log among them)."""
    lines: list[str] = []
    _capture.lines = lines
    try:
        yield lines
    finally:
        _capture.lines = None


def write_log(lines: list[str]) -> str:
    """Keep a failed load's messages in a file; its path."""
    fd, path = tempfile.mkstemp(prefix="procobsrv-ebpf-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write("".join(lines))
    return path
