"""A symbolic link another user planted: what ``--output`` must not follow."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fakes.availability import unavailable

#: A user that is neither the caller nor root.
OTHER_UID = 65534


def planted_link(directory: Path, target: Path) -> Path:
    """A link to ``target``, owned by :data:`OTHER_UID`, in a directory of theirs made in
    ``directory`` (not sticky: the kernel's protected_symlinks does not apply). Root only."""
    if os.geteuid() != 0:
        unavailable("only root can give a symlink to another user")
    theirs = directory / "theirs"
    theirs.mkdir()
    os.chown(theirs, OTHER_UID, OTHER_UID)
    link = theirs / "events.jsonl"
    link.symlink_to(target)
    os.lchown(link, OTHER_UID, OTHER_UID)
    return link
