"""The one exception type users catch."""


class MonitorError(RuntimeError):
    """Monitoring cannot start or go on; the message says why and what to do."""
