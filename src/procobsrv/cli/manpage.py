"""The man page, written from the argparse parser itself so that it cannot drift from
``--help``: every command, every option, and the examples of each command's epilog.
The build (``scripts/cli_files.py``, run by setup.py) installs it as ``procobsrv.1``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

# argparse has no public way to list a parser's options or subcommands (only to print
# them as help text), so this reads its private _actions and _choices_actions, as shtab,
# which writes the completions, does too; tests/cli/test_reference_files.py checks the page.

#: Sections of the page that are not in the parser.
EXIT_STATUS = [
    ("0", "success (trace: the command's own status)"),
    ("2", "a refused command line, or a failure the message on stderr explains"),
    ("126, 127", "trace: the command could not be run, or was not found"),
    ("128+N", "killed by signal N (130: Ctrl+C; 141: the reader of the output went away)"),
]
SEE_ALSO = "execsnoop(8), forkstat(8), perf-trace(1)"


def roff(text: str) -> str:
    """Text as roff: backslashes and hyphens escaped, no line read as a request."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(
        "\\&" + line if line.startswith((".", "'")) else line for line in escaped.splitlines()
    )


@dataclass(frozen=True)
class Option:
    """One argument of a command, as its help shows it."""

    #: The option strings (``-o``, ``--output``); empty for a positional argument.
    names: tuple[str, ...]
    #: What follows the option (its metavar or choices); None for a flag. A positional
    #: argument's own name.
    value: str | None
    help: str
    #: The title of the argument group it is listed under (``options``, ...).
    group: str


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in the order --help lists them."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            found += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return found


def options(parser: argparse.ArgumentParser) -> list[Option]:
    """Every documented argument of ``parser`` (not --help, not the subcommands), in the
    order --help lists them, group by group."""
    found = []
    for group in parser._action_groups:  # as --help groups them; no public accessor either
        for action in group._group_actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if action.help == argparse.SUPPRESS:
                continue
            choices = "{" + ",".join(map(str, action.choices)) + "}" if action.choices else None
            metavar = str(action.metavar or choices or action.dest.upper())
            help_text = action.help or ""
            if "%(default)" in help_text:
                help_text = help_text % {"default": action.default}
            takes_value = action.nargs != 0
            value = metavar if takes_value or not action.option_strings else None
            found.append(Option(tuple(action.option_strings), value, help_text, group.title or ""))
    return found


def _option_lines(parser: argparse.ArgumentParser) -> Iterator[str]:
    for option in options(parser):
        value = f"\\fI{roff(option.value)}\\fR" if option.value is not None else ""
        if option.names:
            names = ", ".join(f"\\fB{roff(o)}\\fR" for o in option.names)
            names += f" {value}" if value else ""
        else:
            names = value
        yield ".TP"
        yield names
        yield roff(option.help)


def _examples(parser: argparse.ArgumentParser) -> Iterator[str]:
    if parser.epilog:
        yield ".PP"
        yield ".nf"
        yield roff(parser.epilog.rstrip())
        yield ".fi"


def man_page(parser: argparse.ArgumentParser, version: str, date: str = "") -> str:
    """The whole page (section 1), in roff."""
    name = parser.prog
    lines = [
        f'.TH {name.upper()} 1 "{date}" "{name} {version}" "User Commands"',
        ".SH NAME",
        f"{name} \\- {roff((parser.description or '').rstrip('.'))}",
        ".SH SYNOPSIS",
        f".B {name}",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR...]",
        ".SH OPTIONS",
        *_option_lines(parser),
        ".SH COMMANDS",
    ]
    for sub_name, sub_help, sub in subcommands(parser):
        lines += [
            f'.SS "{name} {sub_name}"',
            roff(sub.description or sub_help),
            *_option_lines(sub),
            *_examples(sub),
        ]
    if parser.epilog:
        lines += [".SH EXAMPLES", ".nf", roff(parser.epilog.rstrip()), ".fi"]
    lines.append(".SH EXIT STATUS")
    for status, meaning in EXIT_STATUS:
        lines += [".TP", f"\\fB{roff(status)}\\fR", roff(meaning)]
    lines += [".SH SEE ALSO", roff(SEE_ALSO)]
    return "\n".join(lines) + "\n"
