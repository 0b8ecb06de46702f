"""containers.py: the container id in a cgroup path, one case per engine's naming, and the
--container filter's prefix match."""

from __future__ import annotations

from pathlib import Path

import pytest

from procobsrv import EventFilter, EventKind, QueuedItem
from procobsrv.containers import PATTERNS, Container, Pattern, container_of, matches

ROOT = Path(__file__).resolve().parents[1]
ID = "4c5e1f6a2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7"
OTHER = "9" * 64
POD = "6b0e2f3a-1c4d-4e5f-8a9b-0c1d2e3f4a5b"

#: Paths as each engine makes them (from the engines' documented layouts), and what they name.
CASES = [
    # Docker, systemd driver
    (f"/system.slice/docker-{ID}.scope", Container("docker", ID)),
    # Docker, systemd driver, systemd running inside the container (a cgroup below the scope)
    (f"/system.slice/docker-{ID}.scope/init.scope", Container("docker", ID)),
    # Docker, cgroupfs driver
    (f"/docker/{ID}", Container("docker", ID)),
    # rootless Docker
    (
        f"/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{ID}.scope",
        Container("docker", ID),
    ),
    # containerd's CRI plugin, systemd driver: burstable, besteffort and guaranteed pods
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{POD.replace('-', '_')}.slice/cri-containerd-{ID}.scope",
        Container("containerd", ID, POD),
    ),
    (
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
        f"{POD.replace('-', '_')}.slice/cri-containerd-{ID}.scope",
        Container("containerd", ID, POD),
    ),
    (
        f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/cri-containerd-{ID}.scope",
        Container("containerd", ID, POD),
    ),
    # CRI-O, systemd driver
    (
        f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/crio-{ID}.scope",
        Container("cri-o", ID, POD),
    ),
    # Kubernetes, cgroupfs driver (the engine is not in the path)
    (f"/kubepods/burstable/pod{POD}/{ID}", Container("cri", ID, POD)),
    (f"/kubepods/pod{POD}/{ID}", Container("cri", ID, POD)),
    # Docker as a Kubernetes engine (dockershim, cri-dockerd): the pod uid too
    (
        f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/docker-{ID}.scope",
        Container("docker", ID, POD),
    ),
    # Podman, root and rootless, and its monitor conmon
    (f"/machine.slice/libpod-{ID}.scope", Container("podman", ID)),
    (
        f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope",
        Container("podman", ID),
    ),
    (f"/machine.slice/libpod-{ID}.scope/container", Container("podman", ID)),
    (f"/machine.slice/libpod-conmon-{ID}.scope", Container("podman", ID)),
    # systemd-nspawn: the machine's name, unescaped
    ("/machine.slice/machine-web1.scope", Container("systemd-nspawn", "web1")),
    (r"/machine.slice/machine-web\x2d1.scope", Container("systemd-nspawn", "web-1")),
    (
        r"/machine.slice/machine-web\x2d1.scope/system.slice/nginx.service",
        Container("systemd-nspawn", "web-1"),
    ),
    # LXC / LXD
    ("/lxc.payload.web1", Container("lxc", "web1")),
    ("/lxc.payload.web1/system.slice/cron.service", Container("lxc", "web1")),
    # docker in docker: the inner container (its cgroup lies under the outer's)
    (f"/system.slice/docker-{OTHER}.scope/docker/{ID}", Container("docker", ID)),
]

NOT_CONTAINERS = [
    None,
    "",
    "/",
    "/init.scope",
    "/system.slice/ssh.service",
    "/system.slice/docker.service",  # the engine itself
    "/system.slice/containerd.service",
    "/user.slice/user-1000.slice/session-3.scope",
    f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice",  # a pod, no container
    f"/system.slice/docker-{ID[:12]}.scope",  # a short id is not how docker names it
    f"/system.slice/docker-{ID.upper()}.scope",
    f"/{ID}",  # 64 hex digits alone: no engine above it
    f"/docker/{ID}x",
    "/machine.slice/machine.scope",  # no name
]


@pytest.mark.parametrize(("path", "expected"), CASES)
def test_the_container_of_each_engines_cgroup(path: str, expected: Container) -> None:
    assert container_of(path) == expected


@pytest.mark.parametrize("path", NOT_CONTAINERS)
def test_cgroups_that_are_no_container(path: str | None) -> None:
    assert container_of(path) is None


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.sample)
def test_each_patterns_sample_names_its_engine(pattern: Pattern) -> None:
    found = container_of(pattern.sample)
    assert found is not None and found.runtime == pattern.runtime
    assert found.id in {ID, "web-1", "web1"}


def test_docs_show_every_pattern_with_its_sample() -> None:
    page = (ROOT / "docs" / "linux.md").read_text()
    for pattern in PATTERNS:
        assert f"`{pattern.sample}`" in page, pattern.sample


def test_a_container_is_told_by_its_id_or_the_ids_beginning() -> None:
    docker = Container("docker", ID)
    assert matches(docker, (ID,)) and matches(docker, (ID[:12],)) and matches(docker, ("x", "4c"))
    assert not matches(docker, (OTHER[:12],)) and not matches(None, (ID,))
    assert not matches(docker, (ID + "0",))


def test_the_filter_keeps_the_processes_of_the_containers_named() -> None:
    def item(cgroup: str | None) -> QueuedItem:
        return QueuedItem(EventKind.EXEC, 10, 1, 1.0, cgroup=cgroup)

    inside = item(f"/system.slice/docker-{ID}.scope")
    other = item(f"/system.slice/docker-{OTHER}.scope")
    host = item("/system.slice/ssh.service")
    unknown = item(None)
    only = EventFilter(containers=[ID[:12]])
    assert only(inside) and not only(other) and not only(host) and not only(unknown)
    both = EventFilter(containers=[ID[:6], OTHER])
    assert both(inside) and both(other) and not both(host)
    assert inside.container == Container("docker", ID) and host.container is None
