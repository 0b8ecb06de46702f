"""cgroup v2 paths by id, for the eBPF source: what its kernel program sent, and the rest.

The program sends a cgroup's path once per id (a PO_CGROUP record ahead of the first event
naming the id). :class:`CgroupPaths` keeps them; an id whose record never arrived (dropped
with a full ring buffer, or forgotten here) is looked up in the cgroup v2 hierarchy, where a
cgroup's id is its directory's inode number.
"""

from __future__ import annotations

import os

from .procfs import cgroup2_root

#: Paths kept; beyond it the oldest are forgotten (and looked up again when named).
REMEMBERED = 16384


class CgroupPaths:
    """cgroup id -> path, e.g. ``/system.slice/ssh.service``."""

    def __init__(self, capacity: int = REMEMBERED) -> None:
        self._paths: dict[int, str | None] = {}
        self._capacity = capacity
        #: ids looked up in the hierarchy (their record was lost or forgotten)
        self.looked_up = 0

    def __len__(self) -> int:
        return len(self._paths)

    def add(self, cgroup_id: int, path: str | None) -> None:
        paths = self._paths
        if len(paths) >= self._capacity and cgroup_id not in paths:
            del paths[next(iter(paths))]
        paths[cgroup_id] = path

    def get(self, cgroup_id: int) -> str | None:
        """Its path; None when the cgroup is gone and its path was never sent.

        An id not found stays None (ids are not reused) until its record says otherwise."""
        try:
            return self._paths[cgroup_id]
        except KeyError:
            self.looked_up += 1
            path = find_by_id(cgroup_id)
            self.add(cgroup_id, path)
            return path


def find_by_id(cgroup_id: int, root: str | None = None) -> str | None:
    """The path of the cgroup with this id, by a walk of the v2 hierarchy (None: not found).

    Directory entries carry their inode number, so the walk reads directories only."""
    root = root if root is not None else cgroup2_root()
    if root is None:
        return None
    try:
        if os.stat(root).st_ino == cgroup_id:
            return "/"
    except OSError:
        return None
    pending = [root]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue  # removed meanwhile, or not readable
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
            except OSError:
                continue
            if entry.inode() == cgroup_id:
                return "/" + os.path.relpath(entry.path, root)
            pending.append(entry.path)
    return None
