r"""The forms a Windows path takes between the kernel, the SCM and user mode.

The kernel reports a process's image as an NT path (``\??\C:\x.exe``), the SCM stores a
driver's ImagePath in whatever form it was given (``\??\C:\...``, ``\SystemRoot\...``,
``%SystemRoot%\...``, ``C:\...``), and user mode writes ``C:\x.exe``. The prefix that marks
a Win32 path handed to the object manager (``\??\``, or ``\\?\`` from user mode) is stripped
in one place, :func:`strip_nt_prefix`; :func:`nt_to_dos_path` (records) and
:func:`normalize_image_path` (registrations) build on it.
"""

from __future__ import annotations

import ntpath

#: Prefixes that hand a Win32 path to the object manager as it is: ``\??\C:\x``, ``\\?\C:\x``.
NT_PATH_PREFIXES = ("\\??\\", "\\\\?\\")
#: The kernel's name of the Windows directory in an ImagePath, and what user mode calls it.
SYSTEM_ROOT_NT = "\\systemroot\\"
SYSTEM_ROOT_WIN32 = "%SystemRoot%\\"
#: Where the ``:`` of a drive letter stands: ``C:\x``.
DRIVE_COLON = 1


def strip_nt_prefix(path: str) -> str:
    r"""``path`` without its ``\??\`` or ``\\?\`` prefix; unchanged when it has none."""
    for prefix in NT_PATH_PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


def nt_to_dos_path(path: str) -> str:
    r"""``\??\C:\x`` -> ``C:\x``; other forms (``\Device\HarddiskVolume3\x``) unchanged."""
    stripped = strip_nt_prefix(path)
    if stripped != path and stripped[DRIVE_COLON : DRIVE_COLON + 1] == ":":
        return stripped
    return path


def normalize_image_path(path: str) -> str:
    """A comparable form of a service's ImagePath (NT prefix off, case folded)."""
    path = strip_nt_prefix(path)
    if path.lower().startswith(SYSTEM_ROOT_NT):
        path = SYSTEM_ROOT_WIN32 + path[len(SYSTEM_ROOT_NT) :]
    return ntpath.normcase(ntpath.normpath(path))
