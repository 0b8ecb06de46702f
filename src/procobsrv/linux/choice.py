"""Which Linux publisher feeds the framework: the eBPF program when this process may load
it, else the process-events connector (whose command lines short processes may lack)."""

from __future__ import annotations

import logging

from ..errors import MonitorError
from ..platform import KernelSource
from .connector_source import ConnectorSource
from .ebpf_source import EbpfSource
from .sync import OutOfFds

log = logging.getLogger(__name__)

NAMES = ("auto", "ebpf", "connector")
FALLBACK = (
    "using the process-events connector: command lines and images of short-lived processes "
    "may be missing. The eBPF source needs root or CAP_BPF + CAP_PERFMON ({cause})"
)
_warned: list[bool] = []


def open_named_source(name: str) -> KernelSource:
    """Open the source ``name`` names ("auto": eBPF if it loads, else the connector)."""
    if name not in NAMES:
        raise MonitorError(f"unknown source {name!r}: use one of {', '.join(NAMES)}")
    if name == "auto":
        ebpf = EbpfSource()
        try:
            ebpf.open()
            return ebpf
        except OutOfFds:
            raise  # the connector would fail alike: say what ran out
        except MonitorError as exc:
            if not _warned:  # said once per process: a loop of start/stop is not news
                _warned.append(True)
                log.warning(FALLBACK.format(cause=exc))
            name = "connector"
    source: KernelSource = EbpfSource() if name == "ebpf" else ConnectorSource()
    source.open()
    return source
