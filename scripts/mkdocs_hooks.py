"""mkdocs hooks (mkdocs.yml ``hooks:``).

- The command-line reference (``docs/reference/cli.md``) is written from the argparse parser
  at build time, where the page says ``<!-- cli-reference -->``, so that it cannot drift from
  ``--help``; it walks the parser as the man page does (``procobsrv.cli.manpage``).
- Sphinx cross-reference roles in docstrings are shown as code: the docstrings use reST roles
  (:class:`Platform`); mkdocstrings renders the backquoted part as code and would leave the
  role's name in front of it.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from procobsrv.cli.main import build_parser
from procobsrv.cli.manpage import EXIT_STATUS, Option, options, subcommands

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const):<code>~?")
CLI_MARKER = "<!-- cli-reference -->"
#: The width argparse wraps usage lines to: a code block of 80 columns fits the column.
USAGE_COLUMNS = "80"


@contextmanager
def _columns(width: str) -> Iterator[None]:
    """argparse wraps to $COLUMNS: a fixed width makes the page the same on every build."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def _cell(text: str) -> str:
    """Help text as a Markdown table cell: pipes escaped, backquoted as it is."""
    return text.replace("|", "\\|").replace("\n", " ")


def _option_row(option: Option) -> str:
    flags = ", ".join(f"`{name}`" for name in option.names)
    if option.value is not None:
        flags = f"{flags} `{option.value}`" if flags else f"`{option.value}`"
    return f"| {_cell(flags)} | {_cell(option.help)} |"


def command_section(title: str, parser: argparse.ArgumentParser, summary: str = "") -> list[str]:
    """One command: what it does, its usage, its options by group, its examples."""
    with _columns(USAGE_COLUMNS):
        usage = parser.format_usage().strip()
    lines = [f"## `{title}`", ""]
    described = (parser.description or summary).strip()
    if described:
        lines += [described, ""]
    lines += ["```text", usage, "```", ""]
    found = options(parser)
    for group in dict.fromkeys(option.group for option in found):
        heading = group[:1].upper() + group[1:]
        lines += [f"**{heading}**", "", "| Option | What it does |", "|---|---|"]
        lines += [_option_row(option) for option in found if option.group == group]
        lines.append("")
    if parser.epilog:
        lines += ["```text", parser.epilog.strip("\n"), "```", ""]
    return lines


def cli_reference(parser: argparse.ArgumentParser) -> str:
    """Markdown for the whole command line: the command, each subcommand, exit statuses."""
    lines = command_section(parser.prog, parser)
    for name, summary, sub in subcommands(parser):
        lines += command_section(f"{parser.prog} {name}", sub, summary)
    lines += ["## Exit status", "", "| Status | Meaning |", "|---|---|"]
    lines += [f"| {status} | {_cell(meaning)} |" for status, meaning in EXIT_STATUS]
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if CLI_MARKER not in markdown:
        return markdown
    return markdown.replace(CLI_MARKER, cli_reference(build_parser()))


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub("<code>", html)
