"""The shipped eBPF object comes from the current sources, and is fit to ship."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from procobsrv.linux import ebpf_abi
from tests.fakes.availability import require_tool

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
SOURCES = ("procobsrv.bpf.c", "procobsrv.h")  # as bpf/Makefile hashes them


def section(name: str) -> bytes:
    objcopy = require_tool("llvm-objcopy")
    return subprocess.run(
        [objcopy, f"--dump-section={name}=/dev/stdout", str(ebpf_abi.OBJECT_PATH), "/dev/null"],
        capture_output=True,
        check=True,
    ).stdout


def test_shipped_object_was_built_from_these_sources() -> None:
    digest = hashlib.sha256(b"".join((BPF_DIR / s).read_bytes() for s in SOURCES)).hexdigest()
    carried = section(ebpf_abi.SOURCES_SECTION).rstrip(b"\0").decode()
    assert carried == digest, "bpf/ changed: run `make bpf` and commit the object"


def test_shipped_object_is_stripped_but_keeps_btf_and_a_gpl_compatible_license() -> None:
    readelf = require_tool("llvm-readelf")
    sections = subprocess.run(
        [readelf, "-S", "-W", str(ebpf_abi.OBJECT_PATH)], capture_output=True, text=True, check=True
    ).stdout
    assert ".BTF " in sections and ".BTF.ext" in sections  # CO-RE needs both
    assert ".debug_" not in sections
    assert section("license") == b"Dual MIT/GPL\0"
