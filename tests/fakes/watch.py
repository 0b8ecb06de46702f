"""`procobsrv watch` as its tests run it: a subprocess, marker children, the schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema

from tests.fakes.availability import require_connector

ROOT = Path(__file__).resolve().parents[2]


def schema() -> dict[str, Any]:
    """What `procobsrv schema` prints (the installed package's copy)."""
    out = subprocess.run(
        [sys.executable, "-m", "procobsrv", "schema"], capture_output=True, text=True, check=True
    ).stdout
    loaded: dict[str, Any] = json.loads(out)
    return loaded


def validator() -> jsonschema.Draft202012Validator:
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s, format_checker=jsonschema.FormatChecker())


def validate_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Every line parses and validates; returns the records."""
    v = validator()
    records = []
    for line in lines:
        record = json.loads(line)
        errors = [e.message for e in v.iter_errors(record)]
        assert not errors, f"{line}\n{errors}"
        records.append(record)
    return records


PROCOBSRV = (sys.executable, "-m", "procobsrv")


@contextmanager
def watching(*args: str, program: Sequence[str] = PROCOBSRV) -> Iterator[subprocess.Popen[str]]:
    """`procobsrv watch ARGS` running (its 'watching' line read from stderr); killed at exit.
    ``program`` is what runs procobsrv (another user's prefix may come first)."""
    proc = subprocess.Popen(
        [*program, "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "watching" in line, line + proc.stderr.read()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def run_markers(tag: str) -> list[int]:
    """Children that end every way: exit 0, exit 3, killed, exec of another program."""
    pids = []
    for argv in (
        ["sh", "-c", "exit 0", tag],
        ["sh", "-c", "exit 3", tag],
        ["sh", "-c", "exec true", tag],
    ):
        child = subprocess.Popen(argv)
        child.wait()
        pids.append(child.pid)
    killed = subprocess.Popen(["sh", "-c", "read line; true", tag], stdin=subprocess.PIPE)
    pids.append(killed.pid)  # waits in a builtin (no child left behind when killed)
    time.sleep(0.05)
    killed.kill()
    killed.wait()
    assert killed.stdin is not None
    killed.stdin.close()
    return pids


def start_watch(*args: str) -> subprocess.Popen[str]:
    """`procobsrv watch ARGS` on the real connector, returned once it has subscribed."""
    require_connector()
    proc = subprocess.Popen(
        [sys.executable, "-m", "procobsrv", "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    assert "watching" in proc.stderr.readline()  # subscribed: from here on nothing is missed
    return proc


_started: list[subprocess.Popen[Any]] = []


def started(proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
    """``proc``, to be killed after the test if it still runs (tests/cli/conftest.py)."""
    _started.append(proc)
    return proc


def kill_started() -> None:
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
