"""A real browser for the tests: headless Chromium loads a page, and says what the page's
scripts logged (an uncaught error is a console message) and what the DOM became."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.fakes.availability import require_tool

#: Flags for a quiet, offline, throw-away browser run as root in a container.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
]
#: A console message in Chromium's log: uncaught exceptions and console.error/log calls.
CONSOLE = re.compile(r"CONSOLE|Uncaught")


@dataclass(frozen=True)
class Loaded:
    dom: str
    #: Lines of the browser's log that come from the page's console.
    console: list[str]


def load(page: Path, scratch: Path, *, screenshot: Path | None = None) -> Loaded:
    """The page's DOM after its scripts ran (and a 1280x800 screenshot, if asked)."""
    browser = require_tool("chromium")
    profile = scratch / "chromium-profile"
    base = [browser, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,800"]
    dumped = subprocess.run(
        [*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    console = [line for line in dumped.stderr.splitlines() if CONSOLE.search(line)]
    if screenshot is not None:
        shot = subprocess.run(
            [*base, f"--screenshot={screenshot}", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shot.returncode == 0, shot.stderr[-2000:]
        console += [line for line in shot.stderr.splitlines() if CONSOLE.search(line)]
    return Loaded(dumped.stdout, console)
