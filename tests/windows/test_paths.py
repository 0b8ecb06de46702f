"""Windows path forms: the NT prefix stripped once, for records and for registrations."""

from __future__ import annotations

import pytest

from procobsrv.windows.paths import normalize_image_path, nt_to_dos_path, strip_nt_prefix


@pytest.mark.parametrize(
    ("path", "stripped"),
    [
        ("\\??\\C:\\x.exe", "C:\\x.exe"),
        ("\\\\?\\C:\\x.exe", "C:\\x.exe"),
        ("\\??\\UNC\\server\\share\\x.exe", "UNC\\server\\share\\x.exe"),
        ("C:\\x.exe", "C:\\x.exe"),
        ("\\Device\\HarddiskVolume3\\x.exe", "\\Device\\HarddiskVolume3\\x.exe"),
    ],
)
def test_strip_nt_prefix(path: str, stripped: str) -> None:
    assert strip_nt_prefix(path) == stripped


def test_nt_to_dos_path() -> None:
    assert nt_to_dos_path("\\??\\C:\\x.exe") == "C:\\x.exe"
    assert nt_to_dos_path("\\\\?\\C:\\x.exe") == "C:\\x.exe"
    assert nt_to_dos_path("\\Device\\HarddiskVolume3\\x.exe") == "\\Device\\HarddiskVolume3\\x.exe"
    # Only a drive-letter path loses its prefix: the rest has no shorter Win32 form.
    assert nt_to_dos_path("\\??\\UNC\\server\\x.exe") == "\\??\\UNC\\server\\x.exe"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("\\??\\C:\\Drv\\ProcObsrv.sys", "c:\\drv\\procobsrv.SYS"),
        ("\\\\?\\C:\\Drv\\ProcObsrv.sys", "C:\\drv\\ProcObsrv.sys"),
        ("C:/drv/x/../ProcObsrv.sys", "C:\\drv\\ProcObsrv.sys"),
        ("\\SystemRoot\\System32\\drivers\\p.sys", "%SystemRoot%\\system32\\DRIVERS\\p.sys"),
    ],
)
def test_image_paths_compare_as_windows_does(a: str, b: str) -> None:
    assert normalize_image_path(a) == normalize_image_path(b)
