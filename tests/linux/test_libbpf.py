"""linux/libbpf.py: each binding's failure rule (libbpf.Check), applied to stand-in
functions so that no libbpf needs to be installed."""

from __future__ import annotations

import ctypes
import errno
import re
import subprocess
from typing import Any

import pytest

from procobsrv.errors import MonitorError
from procobsrv.linux import libbpf
from procobsrv.linux.libbpf import BINDINGS, Check, Libbpf, LibbpfError
from tests.fakes.availability import require_tool


class StandIn:
    """A C function as ctypes has it: restype, argtypes, errcheck; returns ``result``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.result: Any = 0
        self.errcheck: Any = None

    def __call__(self, *args: Any) -> Any:
        if self.errcheck is None:
            return self.result
        return self.errcheck(self.result, self, args)


class StandInLib:
    def __init__(self) -> None:
        self.functions = {b.name: StandIn(b.name) for b in BINDINGS}

    def __getattr__(self, name: str) -> StandIn:
        return self.functions[name]


@pytest.fixture
def lib() -> tuple[Libbpf, StandInLib]:
    fake = StandInLib()
    return Libbpf(fake), fake


def test_every_binding_says_how_it_fails() -> None:
    assert all(isinstance(b.fails, Check) for b in BINDINGS)
    assert {b.name for b in BINDINGS if b.fails is Check.NEVER} >= {"bpf_object__close"}


def test_a_negative_result_is_minus_errno(lib: tuple[Libbpf, StandInLib]) -> None:
    api, fake = lib
    fake.functions["bpf_map__fd"].result = -errno.ENOENT
    with pytest.raises(LibbpfError, match="bpf_map__fd failed") as caught:
        api.bpf_map__fd(None)
    assert caught.value.errno == errno.ENOENT and caught.value.function == "bpf_map__fd"
    fake.functions["bpf_map__fd"].result = 5
    assert api.bpf_map__fd(None) == 5


def test_a_null_result_takes_errno(lib: tuple[Libbpf, StandInLib]) -> None:
    api, fake = lib
    fake.functions["bpf_program__attach"].result = None
    ctypes.set_errno(errno.EPERM)
    with pytest.raises(LibbpfError) as caught:
        api.bpf_program__attach(None)
    assert caught.value.errno == errno.EPERM


def test_a_function_that_cannot_fail_is_not_checked(lib: tuple[Libbpf, StandInLib]) -> None:
    api, fake = lib
    fake.functions["bpf_object__next_program"].result = None  # the end of the list
    assert api.bpf_object__next_program(None, None) is None
    assert fake.functions["bpf_object__close"].errcheck is None
    assert libbpf.Binding("x", None, ()).fails is Check.NEVER


def test_every_binding_is_exported_by_libbpf_1_1() -> None:
    """Debian 12's libbpf1 is 1.1.2: each function must come from a version node it has
    (LIBBPF_0.0.1 .. LIBBPF_1.1.0), read from the installed library's dynamic symbols."""
    objdump = require_tool("objdump")
    try:
        libbpf.api()  # loads libbpf.so.1: its file is then in /proc/self/maps
    except MonitorError:
        pytest.skip("libbpf is not installed")
    with open("/proc/self/maps") as f:
        resolved = next(line.split()[-1] for line in f if f"/{libbpf.SONAME}" in line)
    out = subprocess.run([objdump, "-T", resolved], capture_output=True, text=True).stdout
    exported = {m[2]: m[1] for m in re.finditer(r"\s(LIBBPF_[\d.]+)\s+(\w+)$", out, re.M)}
    for binding in BINDINGS:
        version = exported.get(binding.name)
        assert version is not None, binding.name
        number = tuple(int(part) for part in version.removeprefix("LIBBPF_").split("."))
        assert number <= (1, 1, 0), (binding.name, version)
