"""What the docs cite exists: every test they name as proof, every file they point to."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

QUALIFIED = re.compile(r"(tests/[\w/]+\.py)::(test_\w+)")
BARE = re.compile(r"`(test_\w+)`")
PATHS = re.compile(r"`((?:src/procobsrv|driver|examples|scripts|tests|docs)/[\w./-]+\.\w+)`")


def defined_tests() -> dict[str, set[str]]:
    tests: dict[str, set[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        names = set(re.findall(r"^\s*def (test_\w+)", path.read_text(), re.MULTILINE))
        tests[path.relative_to(ROOT).as_posix()] = names
    return tests


def test_every_cited_test_exists() -> None:
    tests = defined_tests()
    everywhere = set().union(*tests.values())
    missing = []
    cited = 0
    for page in PAGES:
        text = page.read_text()
        for path, name in QUALIFIED.findall(text):
            cited += 1
            if name not in tests.get(path, set()):
                missing.append(f"{page.name}: {path}::{name}")
        for name in BARE.findall(text):
            cited += 1
            if name not in everywhere:
                missing.append(f"{page.name}: {name}")
    assert cited >= 40, "the pages cite far fewer tests than they should"
    assert missing == [], "cited tests that do not exist:\n" + "\n".join(missing)


def test_every_cited_file_exists() -> None:
    missing = [
        f"{page.name}: {path}"
        for page in PAGES
        for path in PATHS.findall(page.read_text())
        if not (ROOT / path).exists()
    ]
    assert missing == [], "cited files that do not exist:\n" + "\n".join(missing)
