"""procobsrv: be told, the moment it happens, that a process started or ended.

The classes mirror the article "Detecting Windows NT/2K process execution": subclass
:class:`CallbackHandler`, then ``ApplicationScope.get_instance(handler).start_monitoring()``.
"""

from .callback import CallbackHandler
from .container import OverflowPolicy, QueueContainer
from .errors import MonitorError
from .events import EventKind, QueuedItem
from .filters import EventFilter, FilterHandler
from .lines import JsonLinesHandler, LinesHandler
from .process_monitor import ProcessThreadMonitor
from .process_tree import ProcessNode, ProcessTree
from .retrieval import RetrievalThread
from .scope import ApplicationScope, MonitorStats
from .streams import AsyncEventStream, EventStream, awatch, monitor, watch
from .subscription import Subscription
from .threads import CustomThread

__version__ = "0.1.0"

__all__ = [
    "ApplicationScope",
    "AsyncEventStream",
    "CallbackHandler",
    "CustomThread",
    "EventFilter",
    "EventKind",
    "EventStream",
    "FilterHandler",
    "JsonLinesHandler",
    "LinesHandler",
    "MonitorError",
    "MonitorStats",
    "OverflowPolicy",
    "ProcessNode",
    "ProcessThreadMonitor",
    "ProcessTree",
    "QueueContainer",
    "QueuedItem",
    "RetrievalThread",
    "Subscription",
    "awatch",
    "monitor",
    "watch",
]
