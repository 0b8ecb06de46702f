"""The one small interface every output of the agent is (a text stream, a file, NATS
JetStream), apart from the outputs themselves so that each output's module can import it
without importing the others."""

from __future__ import annotations

import abc

from .records import Record

_SECONDS_PER_DAY = 86400.0
#: Age after which a JetStream stream the agent creates drops events (0: never).
DEFAULT_STREAM_MAX_AGE = 7 * _SECONDS_PER_DAY


class Sink(abc.ABC):
    """Takes records, one at a time, from the retrieval thread. ``send`` must not block for
    long: the monitor's queue is behind it."""

    @abc.abstractmethod
    def send(self, record: Record) -> None:
        """Write or queue one record."""

    def reopen(self) -> None:  # noqa: B027 (optional)
        """Called on SIGHUP (log rotation): a file sink opens its path anew."""

    def close(self) -> None:  # noqa: B027 (optional)
        """Deliver what is pending, then release the resources."""

    def summary(self) -> str | None:
        """One line for the watch's summary, or None."""
        return None
