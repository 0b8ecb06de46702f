"""The types of the console tool's options: each refuses a bad value with one line (argparse
turns ``ArgumentTypeError`` into ``procobsrv: argument --x: ...``, status 2)."""

from __future__ import annotations

import argparse
import math
import re
import threading
from collections.abc import Callable

#: The longest wait the standard library accepts (about 292 years on Linux).
LONGEST_WAIT = threading.TIMEOUT_MAX


def add_match_and_duration(p: argparse.ArgumentParser, what: str) -> None:
    """``--match REGEX`` (searched in ``what``) and ``--duration SECONDS``."""
    p.add_argument("--match", type=regex, metavar="REGEX", help=f"only events whose {what} match")
    p.add_argument("--duration", type=seconds, metavar="SECONDS", help="stop after this long")


def container_id(text: str) -> str:
    """A container id or its beginning: not empty (an empty prefix would match every
    container), no ``/`` (a cgroup path is not an id)."""
    if not text or "/" in text:
        raise argparse.ArgumentTypeError(
            f"not a container id: {text!r} (its hex digits, or a machine's name)"
        )
    return text


def regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression: {text!r} ({exc})") from exc


def seconds(text: str) -> float:
    """A duration above 0 that a wait can take."""
    value = _float(text)
    if not 0 < value <= LONGEST_WAIT:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds above 0 and at most {LONGEST_WAIT:.0f}"
        )
    return value


def age(text: str) -> float:
    """A duration of 0 (never) or more."""
    value = _float(text)
    if not 0 <= value <= LONGEST_WAIT:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds from 0 to {LONGEST_WAIT:.0f}"
        )
    return value


def integer(low: int, high: int) -> Callable[[str], int]:
    """An integer in ``low..high``."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer in {low}..{high}")
        return value

    check.__name__ = "integer"  # what argparse names in "invalid integer value"
    return check


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan  # refused by every range check
