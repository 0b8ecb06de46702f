"""Which Linux publisher feeds the framework: the eBPF program when this process may load
it, else the process-events connector (whose command lines short processes may lack), else
``procobsrv serve`` when the kernel refuses both to this process (an unprivileged user)."""

from __future__ import annotations

import logging

from ..errors import MonitorError
from ..platform import KernelSource
from .connector_source import ConnectorSource
from .ebpf_source import EbpfSource
from .privilege import NotPermitted, both_refused
from .service_source import ServiceSource
from .sync import OutOfFds

log = logging.getLogger(__name__)

#: "kernel": eBPF, else the connector, never the service (what the service itself uses).
NAMES = ("auto", "ebpf", "connector", "service", "kernel")
FALLBACK = (
    "using the process-events connector: command lines and images of short-lived processes "
    "may be missing. The eBPF source would give them all, but {cause}"
)
THROUGH_SERVICE = (
    "events come through the procobsrv service at {path} ({sees}): the kernel gives this "
    "process neither source itself"
)
_warned: list[bool] = []


def open_named_source(name: str) -> KernelSource:
    """Open the source ``name`` names ("auto": eBPF if it loads, else the connector, else
    the service)."""
    if name not in NAMES:
        raise MonitorError(f"unknown source {name!r}: use one of {', '.join(NAMES)}")
    if name == "ebpf":
        return _opened(EbpfSource())
    if name == "connector":
        return _opened(ConnectorSource())
    if name == "service":
        return _opened(ServiceSource())
    try:
        return _kernel_source()
    except NotPermitted as refused:
        if name == "kernel":
            raise
        return _service_after(refused)


def _service_after(refused: NotPermitted) -> KernelSource:
    """The open service source, when the kernel refused this process both of its own."""
    try:
        source = ServiceSource()
        source.open()
    except MonitorError as no_service:
        raise MonitorError(f"{refused} Or use the procobsrv service: {no_service}") from refused
    sees = "every process" if source.hello.get("sees") == "all" else "this user's processes"
    log.warning(THROUGH_SERVICE.format(path=source.socket_path, sees=sees))
    return source


def _kernel_source() -> KernelSource:
    """eBPF if it loads, else the connector (warned once)."""
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
