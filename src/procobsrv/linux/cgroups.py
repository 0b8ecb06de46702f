"""cgroup v2 paths by id, for the eBPF source: what its kernel program sent, and the rest.

The program sends a cgroup's path once per id (a PO_CGROUP record ahead of the first event
naming the id) and remembers PO_CGROUPS_REMEMBERED ids, least recently used first out.
:class:`CgroupPaths` keeps more, also least recently used first out, so that an id the
kernel still remembers (and will not send again) is not forgotten here first. An id whose
record never arrived (dropped with a full ring buffer, or forgotten here) is opened by
handle, in O(1): a cgroup's id is its kernfs node's, which ``open_by_handle_at`` takes as a
file handle on the cgroup2 mount. That needs CAP_DAC_READ_SEARCH; without it the path stays
None. The monitor thread never walks the hierarchy.
"""

from __future__ import annotations

import ctypes
import os
from collections import OrderedDict

from . import libc
from .ebpf_abi import PO_CGROUPS_REMEMBERED
from .procfs import cgroup2_root

#: Paths kept; beyond it the least recently named are forgotten (and opened again when
#: named). More than the kernel remembers: see the module's docstring.
REMEMBERED = 2 * PO_CGROUPS_REMEMBERED


class CgroupPaths:
    """cgroup id -> path, e.g. ``/system.slice/ssh.service``."""

    def __init__(self, capacity: int = REMEMBERED) -> None:
        self._paths: OrderedDict[int, str | None] = OrderedDict()
        self._capacity = capacity
        self._root: str | None = None
        #: ids opened by handle (their record was lost or forgotten)
        self.looked_up = 0

    def __len__(self) -> int:
        return len(self._paths)

    def add(self, cgroup_id: int, path: str | None) -> None:
        paths = self._paths
        if len(paths) >= self._capacity and cgroup_id not in paths:
            paths.popitem(last=False)
        paths[cgroup_id] = path
        paths.move_to_end(cgroup_id)

    def get(self, cgroup_id: int) -> str | None:
        """Its path; None when the cgroup is gone (or cannot be opened) and its path was
        never sent.

        An id not found stays None (ids are not reused) until its record says otherwise."""
        paths = self._paths
        try:
            paths.move_to_end(cgroup_id)  # a busy cgroup stays
        except KeyError:
            self.looked_up += 1
            if self._root is None:
                self._root = cgroup2_root()
            path = open_by_id(cgroup_id, self._root) if self._root is not None else None
            self.add(cgroup_id, path)
            return path
        return paths[cgroup_id]


def open_by_id(cgroup_id: int, root: str) -> str | None:
    """The path of the cgroup with this id under the cgroup2 mount ``root`` (None: gone, or
    no CAP_DAC_READ_SEARCH), by handle: a few system calls, whatever the hierarchy's size."""
    try:
        mount = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        handle = libc.kernfs_handle(8, libc.FILEID_KERNFS, cgroup_id)
        fd = libc.open_by_handle_at(mount, ctypes.byref(handle), os.O_PATH | os.O_DIRECTORY)
    finally:
        os.close(mount)
    if fd < 0:
        return None
    try:
        where = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    finally:
        os.close(fd)
    if where == root:
        return "/"
    if where.startswith(root + "/"):
        return where[len(root) :]
    return None  # a cgroup no longer reachable from the mount (removed meanwhile)
