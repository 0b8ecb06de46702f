"""procobsrv as an agent: versioned JSON records, durable outputs (an appended file, NATS
JetStream) and the collector that reads a fleet's stream back.

The framework classes know nothing of this package: an output is an ordinary
:class:`~procobsrv.CallbackHandler` (:class:`RecordHandler`) feeding a :class:`Sink`.
"""

from .outputs import RecordHandler
from .records import SCHEMA_VERSION, RecordMaker, original_bytes, schema_text
from .sink import Sink

__all__ = [
    "SCHEMA_VERSION",
    "RecordHandler",
    "RecordMaker",
    "Sink",
    "original_bytes",
    "schema_text",
]
