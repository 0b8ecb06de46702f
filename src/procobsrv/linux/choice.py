"""Which Linux publisher feeds the framework: the eBPF program when this process may load
it, else the process-events connector (whose command lines short processes may lack)."""

from __future__ import annotations

import logging

from ..errors import MonitorError
from ..platform import KernelSource
from .connector_source import ConnectorSource
from .ebpf_source import EbpfSource
from .privilege import NotPermitted, both_refused
from .sync import OutOfFds

log = logging.getLogger(__name__)

NAMES = ("auto", "ebpf", "connector")
FALLBACK = (
    "using the process-events connector: command lines and images of short-lived processes "
    "may be missing. The eBPF source would give them all, but {cause}"
)
_warned: list[bool] = []


def open_named_source(name: str) -> KernelSource:
    """Open the source ``name`` names ("auto": eBPF if it loads, else the connector)."""
    if name not in NAMES:
        raise MonitorError(f"unknown source {name!r}: use one of {', '.join(NAMES)}")
    if name != "auto":
        return _opened(EbpfSource() if name == "ebpf" else ConnectorSource())
    try:
        return _opened(EbpfSource())
    except OutOfFds:
        raise  # the connector would fail alike: say what ran out
    except MonitorError as ebpf_error:
        connector = _connector_after(ebpf_error)
        if not _warned:  # said once per process: a loop of start/stop is not news
            _warned.append(True)
            log.warning(FALLBACK.format(cause=ebpf_error))
        return connector


def _connector_after(ebpf_error: MonitorError) -> KernelSource:
    """The open connector after eBPF failed with ``ebpf_error``; if the kernel refuses both to
    this process, one error says so (not a fallback warning followed by a second error)."""
    try:
        return _opened(ConnectorSource())
    except NotPermitted as connector_error:
        if isinstance(ebpf_error, NotPermitted):
            raise both_refused(ebpf_error, connector_error) from connector_error
        raise


def _opened(source: KernelSource) -> KernelSource:
    source.open()
    return source
