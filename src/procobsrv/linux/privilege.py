"""What the kernel refused this process, and what would grant it: one wording for both
Linux sources and for ``source="auto"`` when neither may be opened.

Whether a user may listen is decided by the running kernel's build, not its version (Linux
6.6 let any user join the connector's group, yet builds of 6.18 refuse it), so procobsrv
never predicts it: it tries, and says what the kernel answered.
"""

from __future__ import annotations

import os

from ..errors import MonitorError

EBPF_CAPABILITIES = "CAP_BPF + CAP_PERFMON"
CONNECTOR_CAPABILITIES = "CAP_NET_ADMIN"
#: Where the docs explain granting a capability without handing it to every Python script.
GUIDE = "docs/linux.md, Privileges"
_INITIAL_ID_MAP = ["0", "0", "4294967295"]


class NotPermitted(MonitorError):
    """The kernel refused this process what a source needs.

    ``refused`` names what the kernel refused, ``capabilities`` what would grant it."""

    def __init__(self, refused: str, capabilities: str, *, both: bool = False) -> None:
        self.refused = refused
        self.capabilities = capabilities
        whom = f"this process (uid {os.geteuid()})"
        said = (
            f"the kernel refused {whom} both sources of process events: {refused}"
            if both
            else f"the kernel refused {refused} for {whom}"
        )
        super().__init__(f"{said}{_situation()}. {advice(capabilities)}")


def advice(capabilities: str) -> str:
    """How to grant ``capabilities``: never with setcap on the interpreter every script uses."""
    where = (
        f"to the procobsrv service (packaging/procobsrv.service) or to a dedicated copy of "
        f"the Python interpreter, never to the system python3 ({GUIDE})"
    )
    if os.geteuid() == 0 and not in_user_namespace():
        return f"Grant {capabilities} {where}"
    return f"Run as root, or grant {capabilities} {where}"


def ebpf_refused(detail: str) -> NotPermitted:
    """The kernel refused to load the eBPF program (``detail``: the failing call and errno)."""
    return NotPermitted(f"the loading of the eBPF program ({detail})", EBPF_CAPABILITIES)


def connector_refused(step: str) -> NotPermitted:
    """The kernel refused ``step`` ("the bind", "the subscription") to the connector's group.

    Whether a user other than root may join it depends on the kernel's build."""
    return NotPermitted(f"{step} to the process-events group (cn_proc)", CONNECTOR_CAPABILITIES)


def both_refused(ebpf: NotPermitted, connector: NotPermitted) -> NotPermitted:
    """``source="auto"`` found neither source open to this process: one error for both."""
    return NotPermitted(
        f"{ebpf.refused} and {connector.refused}",
        f"{EBPF_CAPABILITIES} (eBPF: exact command lines) or {CONNECTOR_CAPABILITIES} "
        f"(the connector)",
        both=True,
    )


def in_user_namespace() -> bool:
    """True in a user namespace other than the host's, whose root is no root on the host."""
    try:
        with open("/proc/self/uid_map") as uid_map:
            return uid_map.read().split() != _INITIAL_ID_MAP
    except OSError:
        return False


def _situation() -> str:
    """Why root was refused: "run as root" alone would mislead it."""
    if in_user_namespace():
        return " (it runs in a user namespace, whose root is not root on the host)"
    if os.geteuid() == 0:
        return " (it is root, but with a reduced capability set)"
    return ""
