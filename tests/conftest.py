"""Shared test policy: outside CI a missing tool or kernel feature skips with a reason;
in CI (CI=true) it fails, because CI must run everything."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"required in CI but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Path of an executable the test needs."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (scripts/setup-system installs it)")
        raise AssertionError("unreachable")
    return path
