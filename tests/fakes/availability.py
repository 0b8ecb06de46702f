"""Shared test policy: outside CI a missing tool or kernel feature skips with a reason;
in CI (CI=true) it fails, because CI must run everything."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

from procobsrv import MonitorError
from procobsrv.platform import KernelSource

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"required in CI but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Path of an executable the test needs."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (scripts/setup-system installs it)")
        raise AssertionError("unreachable")
    return path


#: What opening each kernel source once said: "" when it opened (probed once per run).
_problems: dict[str, str] = {}


def _require_source(what: str, make: Callable[[], KernelSource]) -> None:
    """Skip (locally) or fail (CI) when ``make()``'s source cannot be opened here."""
    if what not in _problems:
        source = make()
        try:
            source.open()
            _problems[what] = ""
        except MonitorError as exc:
            _problems[what] = str(exc)
        finally:
            source.close()
    if _problems[what]:
        unavailable(f"{what}: {_problems[what]}")


def require_connector() -> None:
    """Skip (locally) or fail (CI) when the kernel's process-events connector is unusable."""
    from procobsrv.linux import ConnectorSource

    _require_source("process-events connector", ConnectorSource)


def require_ebpf() -> None:
    """Skip (locally) or fail (CI) when this process may not load the eBPF program."""
    from procobsrv.linux import EbpfSource

    _require_source("eBPF source", lambda: EbpfSource(read_proc=False))
