"""The NATS client (nats-py) is an optional extra: the modules that need it are imported
lazily, inside :func:`needs_nats`, which turns its absence into one line saying what to
install instead of a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import MonitorError

EXTRA = "nats"
INSTALL = f"pip install 'procobsrv[{EXTRA}]' (in a clone: .venv/bin/pip install -e '.[{EXTRA}]')"


@contextmanager
def needs_nats(what: str) -> Iterator[None]:
    """Imports in this block may need nats-py; ``what`` names the feature that does."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "nats":
            raise  # another module is missing: not ours to explain
        raise MonitorError(
            f"{what} needs the NATS client (nats-py), which is not installed: {INSTALL}"
        ) from exc
