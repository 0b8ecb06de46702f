"""procobsrv: be told, the moment it happens, that a process started or ended.

The classes mirror the article "Detecting Windows NT/2K process execution": subclass
:class:`CallbackHandler`, then ``ApplicationScope.get_instance(handler).start_monitoring()``.
"""

from .container import OverflowPolicy, QueueContainer
from .errors import MonitorError
from .events import EventKind, QueuedItem
from .handler import CallbackHandler
from .monitor import ProcessThreadMonitor
from .retrieval import RetrievalThread
from .scope import ApplicationScope, MonitorStats
from .threads import CustomThread

__version__ = "0.1.0"

__all__ = [
    "ApplicationScope",
    "CallbackHandler",
    "CustomThread",
    "EventKind",
    "MonitorError",
    "MonitorStats",
    "OverflowPolicy",
    "ProcessThreadMonitor",
    "QueueContainer",
    "QueuedItem",
    "RetrievalThread",
]
