"""Linux: the kernel's process-events connector feeds the framework."""

from ..platform import Platform
from .source import ConnectorSource
from .sync import EventFd, Lock, PollWaiter

PLATFORM = Platform(
    name="linux",
    new_event=EventFd,
    new_mutex=Lock,
    new_waiter=PollWaiter,
    new_source=ConnectorSource,
)

__all__ = ["PLATFORM", "ConnectorSource", "EventFd", "Lock", "PollWaiter"]
