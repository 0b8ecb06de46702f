"""Which :class:`~procobsrv.platform.Platform` this interpreter runs on.

Apart from ``platform.py`` (the interface, which imports no kernel's code) so that the
kernels' packages can import the interface without a cycle: ``host`` -> ``linux`` /
``windows`` -> ``platform``.
"""

from __future__ import annotations

import sys

from .errors import MonitorError
from .platform import Platform


def current_platform() -> Platform:
    """The platform this interpreter runs on; imports only that platform's modules."""
    if sys.platform.startswith("linux"):
        from .linux import PLATFORM as linux_platform

        return linux_platform
    if sys.platform == "win32":
        from .windows import PLATFORM as windows_platform

        return windows_platform
    raise MonitorError(
        f"procobsrv supports Linux (process-events connector) and Windows (ProcObsrv.sys); "
        f"this system is {sys.platform!r}"
    )
