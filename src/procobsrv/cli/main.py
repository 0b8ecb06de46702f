"""Entry point of the console tool: ``procobsrv`` and ``python -m procobsrv``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

from .. import __version__
from ..agent import cli as agent_cli
from ..errors import MonitorError
from . import demo, driver, serve, trace, watch

#: Exit status of a refused command line, or of a failure the message explains.
USAGE_STATUS = 2
#: Exit status after Ctrl+C: 128 + SIGINT, what a shell reports for an interrupted command.
INTERRUPTED_STATUS = 130
#: The highest ``-v`` count that means more (``-vv``: debug).
MOST_VERBOSE = 2
EXAMPLES = """\
examples:
  sudo procobsrv watch                      process events live, until Ctrl+C
  sudo procobsrv watch --kind exec --json   exec events as JSON lines
  sudo procobsrv trace -- make -j2          what a command ran: a tree with durations
  sudo procobsrv trace --html t.html -- ./build.sh
                                            ... and a timeline to open in a browser
  sudo procobsrv serve                      serve events to other users' programs
  procobsrv COMMAND --help                  the options and examples of one command
"""


class _Parser(argparse.ArgumentParser):
    """Refuses a bad command line with one line (what is wrong and where help is), status 2.

    argparse's default prints the whole usage first: a screenful for one typo."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_STATUS, f"{self.prog}: {message} (see '{self.prog} --help')\n")


class ToolFormatter(logging.Formatter):
    """The tool's log lines look like its other lines: ``procobsrv: warning: ...``
    (``procobsrv: ...`` for information; with ``-vv`` the logger's name too)."""

    def __init__(self, *, debug: bool = False) -> None:
        super().__init__("%(name)s: %(message)s" if debug else "%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"procobsrv: {level}{super().format(record)}"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="procobsrv",
        description="Tell, the moment it happens, that a process started or ended.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"procobsrv {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors in the log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    watch.add_parser(sub)
    trace.add_parser(sub)
    serve.add_parser(sub)
    demo.add_parser(sub)
    driver.register(sub)
    agent_cli.register(sub)  # schema, collect
    return parser


def keep_standard_streams_apart() -> None:
    """A program started with fd 0, 1 or 2 closed (``watch 2>&-``): /dev/null takes the fd,
    so that no file opened later lands there (a status line, or a library's message to fd 2,
    would go into it), and a closed stderr makes the status lines go nowhere instead of to
    stdout, where ``print(file=None)`` sends them. A closed stdout stays ``sys.stdout is
    None``, which ``watch`` refuses to write to (``--output FILE`` does not need it)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free fd: this one
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)


def main(argv: list[str] | None = None) -> int:
    keep_standard_streams_apart()
    args = build_parser().parse_args(argv)
    level = (
        logging.ERROR
        if args.quiet
        else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, MOST_VERBOSE)]
    )
    handler = logging.StreamHandler()
    handler.setFormatter(ToolFormatter(debug=level <= logging.DEBUG))
    logging.basicConfig(level=level, handlers=[handler])
    try:
        return int(args.run(args))
    except (MonitorError, OSError) as exc:  # what went wrong and what to do: one line
        print(f"procobsrv: {exc}", file=sys.stderr)
        return USAGE_STATUS
    except KeyboardInterrupt:
        return INTERRUPTED_STATUS


if __name__ == "__main__":
    sys.exit(main())
