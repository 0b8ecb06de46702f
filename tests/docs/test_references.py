"""What the docs cite exists: every test they name as proof, every file they point to."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

QUALIFIED = re.compile(r"(tests/[\w/]+\.py)::(test_\w+)")
# A test file named without its directory (`test_x.py`, `test_x.py::test_y`): the reader
# cannot tell where it is; the pages must give the path from the root.
UNPLACED = re.compile(r"(?<![\w/])(test_\w+\.py)(?:::(test_\w+))?")
BARE = re.compile(r"`(test_\w+)`")
PATHS = re.compile(r"`((?:src/procobsrv|driver|examples|scripts|tests|docs)/[\w./-]+\.\w+)`")


def defined_tests() -> dict[str, set[str]]:
    tests: dict[str, set[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        names = set(re.findall(r"^\s*def (test_\w+)", path.read_text(), re.MULTILINE))
        tests[path.relative_to(ROOT).as_posix()] = names
    return tests


def missing_tests(text: str, tests: dict[str, set[str]], page: str) -> tuple[int, list[str]]:
    """How many tests ``text`` cites, and those it cites that do not exist where it says."""
    everywhere = set().union(*tests.values())
    missing = []
    cited = 0
    for name, function in UNPLACED.findall(text):
        cited += 1
        where = sorted(path for path in tests if path.rsplit("/", 1)[-1] == name)
        if not where:
            missing.append(f"{page}: {name} (no such test file)")
        elif function and not any(function in tests[path] for path in where):
            missing.append(f"{page}: {name}::{function} (not in {', '.join(where)})")
        else:
            missing.append(f"{page}: {name} (name it by its path: {', '.join(where)})")
    for path, name in QUALIFIED.findall(text):
        cited += 1
        if name not in tests.get(path, set()):
            missing.append(f"{page}: {path}::{name}")
    for name in BARE.findall(text):
        cited += 1
        if name not in everywhere:
            missing.append(f"{page}: {name}")
    return cited, missing


def test_every_cited_test_exists() -> None:
    tests = defined_tests()
    missing = []
    cited = 0
    for page in PAGES:
        found, wrong = missing_tests(page.read_text(), tests, str(page.relative_to(ROOT)))
        cited += found
        missing += wrong
    assert cited >= 40, "the pages cite far fewer tests than they should"
    assert missing == [], "cited tests that do not exist:\n" + "\n".join(missing)


def test_every_cited_file_exists() -> None:
    missing = [
        f"{page.relative_to(ROOT)}: {path}"
        for page in PAGES
        for path in PATHS.findall(page.read_text())
        if not (ROOT / path).exists()
    ]
    assert missing == [], "cited files that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    ("citation", "complaint"),
    [
        ("`tests/test_scope.py::test_no_such_test`", "tests/test_scope.py::test_no_such_test"),
        ("`tests/cli/test_watch.py::test_default_on_error_logs_the_reason`", "test_watch.py"),
        ("`test_no_such_file.py`", "no such test file"),
        ("`test_scope.py::test_no_such_test`", "not in tests/test_scope.py"),
        ("`test_scope.py::test_default_on_error_logs_the_reason`", "name it by its path"),
        ("`test_scope.py`", "name it by its path"),
        ("`test_no_such_test`", "test_no_such_test"),
    ],
)
def test_a_wrong_or_unplaced_citation_is_reported(citation: str, complaint: str) -> None:
    cited, missing = missing_tests(f"proof: {citation}", defined_tests(), "page.md")
    assert cited == 1 and len(missing) == 1 and complaint in missing[0], missing


def test_a_right_citation_is_not_reported() -> None:
    text = "`tests/test_scope.py::test_default_on_error_logs_the_reason`, `tests/test_scope.py`"
    assert missing_tests(text, defined_tests(), "page.md") == (1, [])
