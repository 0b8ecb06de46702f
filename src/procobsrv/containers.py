"""Which container a process runs in, read from its cgroup v2 path.

Container engines put each container's processes in a cgroup of its own, named after the
container: ``docker-<id>.scope``, ``cri-containerd-<id>.scope``, ``libpod-<id>.scope``,
``machine-<name>.scope``... :data:`PATTERNS` lists the names known here, each with a sample
path (docs/linux.md shows the same table). Pure text: no engine is asked, so this
works the same for any source that knows the cgroup path, and on any machine.

The deepest component that names a container wins (docker in docker: the inner one, whose
cgroup lies under the outer's); a Kubernetes pod's uid is read from a component above it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import NamedTuple

#: A container id as the engines make them: 64 lowercase hex digits (sha256).
_ID = r"(?P<id>[0-9a-f]{64})"
#: Parsed paths remembered (cgroups are few, events many).
_CACHED_PATHS = 4096


class Container(NamedTuple):
    """A container, as its cgroup names it."""

    #: docker, containerd, cri-o, cri (a pod's container, engine not named), podman,
    #: systemd-nspawn or lxc.
    runtime: str
    #: The engine's id (64 hex digits), or the machine's name (systemd-nspawn, lxc).
    id: str
    #: The Kubernetes pod's uid (``5f1c...-...``), when the cgroup lies under one.
    pod_uid: str | None = None


@dataclass(frozen=True)
class Pattern:
    """One way an engine names a container's cgroup."""

    runtime: str
    #: What a path component must be (fullmatch), with the id in the group ``id``.
    component: re.Pattern[str]
    #: What the component above it must be, or None: any.
    parent: re.Pattern[str] | None
    #: A cgroup path of this kind, for the docs and the tests.
    sample: str
    #: What makes such a cgroup.
    made_by: str


_SAMPLE_ID = "4c5e1f6a2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7"
_SAMPLE_POD = "6b0e2f3a-1c4d-4e5f-8a9b-0c1d2e3f4a5b"
_SAMPLE_SLICE_POD = _SAMPLE_POD.replace("-", "_")

PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "docker",
        re.compile(rf"docker-{_ID}\.scope"),
        None,
        f"/system.slice/docker-{_SAMPLE_ID}.scope",
        "Docker with the systemd cgroup driver (the default on systemd hosts)",
    ),
    Pattern(
        "docker",
        re.compile(_ID),
        re.compile("docker"),
        f"/docker/{_SAMPLE_ID}",
        "Docker with the cgroupfs driver",
    ),
    Pattern(
        "containerd",
        re.compile(rf"cri-containerd-{_ID}\.scope"),
        None,
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{_SAMPLE_SLICE_POD}"
        f".slice/cri-containerd-{_SAMPLE_ID}.scope",
        "containerd's CRI plugin (Kubernetes) with the systemd cgroup driver",
    ),
    Pattern(
        "cri-o",
        re.compile(rf"crio-{_ID}\.scope"),
        None,
        f"/kubepods.slice/kubepods-pod{_SAMPLE_SLICE_POD}.slice/crio-{_SAMPLE_ID}.scope",
        "CRI-O (Kubernetes) with the systemd cgroup driver",
    ),
    Pattern(
        "cri",
        re.compile(_ID),
        re.compile(r"pod[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        f"/kubepods/besteffort/pod{_SAMPLE_POD}/{_SAMPLE_ID}",
        "Kubernetes with the cgroupfs driver (the path does not name the engine)",
    ),
    Pattern(
        "podman",
        re.compile(rf"libpod-{_ID}\.scope"),
        None,
        f"/machine.slice/libpod-{_SAMPLE_ID}.scope",
        "Podman (rootless: under user@UID.service/user.slice)",
    ),
    Pattern(
        "podman",
        re.compile(rf"libpod-conmon-{_ID}\.scope"),
        None,
        f"/machine.slice/libpod-conmon-{_SAMPLE_ID}.scope",
        "Podman's monitor of that container, conmon: it runs outside the container's "
        "namespaces, but lives and dies with it",
    ),
    Pattern(
        "systemd-nspawn",
        re.compile(r"machine-(?P<id>.+)\.scope"),
        None,
        r"/machine.slice/machine-web\x2d1.scope",
        "systemd-nspawn (and any machine registered with systemd-machined, e.g. libvirt's "
        r"VMs); the id is the machine's name, unescaped (\x2d is -)",
    ),
    Pattern(
        "lxc",
        re.compile(r"lxc\.payload\.(?P<id>.+)"),
        None,
        "/lxc.payload.web1",
        "LXC 4+ and LXD (the id is the container's name)",
    ),
)

#: A Kubernetes pod's cgroup: ``pod<uid>`` (cgroupfs driver) or
#: ``kubepods[-<qos>]-pod<uid with _ for ->.slice`` (systemd driver).
_POD = re.compile(
    r"(?:kubepods(?:-[a-z]+)?-)?pod(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}"
    r"[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?"
)
#: systemd's unit name escapes: ``\x2d`` for ``-``, ``\x5c`` for ``\``...
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _unescape(name: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


@functools.lru_cache(maxsize=_CACHED_PATHS)
def container_of(cgroup: str | None) -> Container | None:
    """The container whose cgroup ``cgroup`` lies in (a cgroup v2 path, as
    ``QueuedItem.cgroup``), or None: not one the patterns know, or no path."""
    if not cgroup:
        return None
    parts = cgroup.strip("/").split("/")
    for depth in range(len(parts) - 1, -1, -1):
        found = _match(parts[depth], parts[depth - 1] if depth else None)
        if found is not None:
            runtime, ident = found
            return Container(runtime, ident, _pod_uid(parts[:depth]))
    return None


def _match(part: str, parent: str | None) -> tuple[str, str] | None:
    for pattern in PATTERNS:
        m = pattern.component.fullmatch(part)
        if m is None:
            continue
        if pattern.parent is not None and (parent is None or not pattern.parent.fullmatch(parent)):
            continue
        ident = m.group("id")
        return pattern.runtime, _unescape(ident) if pattern.runtime == "systemd-nspawn" else ident
    return None


def _pod_uid(above: list[str]) -> str | None:
    """The uid of the pod whose cgroup is the deepest of ``above``, with dashes."""
    for part in reversed(above):
        m = _POD.fullmatch(part)
        if m is not None:
            return m.group("uid").replace("_", "-")
    return None


def matches(container: Container | None, wanted: tuple[str, ...]) -> bool:
    """Whether ``container``'s id starts with one of ``wanted`` (a short id, as ``docker
    ps`` shows, or a whole one)."""
    return container is not None and container.id.startswith(wanted)


def container_fields(container: Container | None) -> dict[str, str | None]:
    """A container as the line's fields (``container_id``, ``container_runtime``,
    ``pod_uid``), all None outside any."""
    if container is None:
        return {"container_id": None, "container_runtime": None, "pod_uid": None}
    return {
        "container_id": container.id,
        "container_runtime": container.runtime,
        "pod_uid": container.pod_uid,
    }
