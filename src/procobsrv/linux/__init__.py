"""Linux: procobsrv's eBPF program (``EbpfSource``), the kernel's process-events connector
(``ConnectorSource``) or ``procobsrv serve`` (``ServiceSource``) feeds the framework; "auto"
takes the first this process may use."""

from ..platform import Platform
from .choice import open_named_source
from .connector_source import ConnectorSource
from .ebpf_source import EbpfSource
from .fork import at_fork_in_child, close_inherited
from .realtime import realtime_threads
from .service_source import ServiceSource
from .sync import EventFd, Lock, PollWaiter

PLATFORM = Platform(
    name="linux",
    new_event=EventFd,
    new_mutex=Lock,
    new_waiter=PollWaiter,
    new_source=ConnectorSource,
    default_source="connector",
    open_named_source=open_named_source,
    realtime_threads=realtime_threads,
    at_fork_in_child=at_fork_in_child,
    close_inherited=close_inherited,
)

__all__ = [
    "PLATFORM",
    "ConnectorSource",
    "EbpfSource",
    "EventFd",
    "Lock",
    "PollWaiter",
    "ServiceSource",
]
