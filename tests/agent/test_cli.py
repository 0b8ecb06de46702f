"""agent/cli.py: the `schema` and `collect` subcommands and the options of `watch --output`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import procobsrv
from procobsrv.agent.cli import (
    add_output_options,
    output_from_args,
    register,
    stream_options,
)
from procobsrv.agent.records import schema_text

#: The stream's documented default retention age ("default 7 days").
SEVEN_DAYS_S = 7 * 24 * 3600.0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="procobsrv")
    register(top.add_subparsers(dest="command", required=True))
    return top


def test_collect_takes_the_servers_and_the_stream_defaults() -> None:
    args = parser().parse_args(["collect", "nats://a:4222,b:4222"])
    assert args.servers == "nats://a:4222,b:4222" and args.durable == "procobsrv-collect"
    assert (args.output, args.kind, args.match, args.duration) == (None, None, None, None)
    assert stream_options(args) == {
        "stream": "PROCOBSRV",
        "replicas": 1,
        "retention": "limits",
        "max_age": SEVEN_DAYS_S,
    }


def test_collect_refuses_an_unknown_retention_or_kind(capsys: pytest.CaptureFixture[str]) -> None:
    for wrong in (["--nats-retention", "forever"], ["--kind", "forked"]):
        with pytest.raises(SystemExit) as exited:
            parser().parse_args(["collect", "nats://a:4222", *wrong])
        assert exited.value.code == 2
        assert "invalid choice" in capsys.readouterr().err


def test_schema_prints_the_shipped_schema(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["schema"])
    assert args.run(args) == 0
    printed = capsys.readouterr().out
    assert printed == schema_text() and json.loads(printed)["$defs"]


def test_watch_without_output_has_no_sink() -> None:
    watch = argparse.ArgumentParser()
    add_output_options(watch)
    args = watch.parse_args([])
    assert output_from_args(args) is None and args.nats_buffer == 100_000


WITHOUT_SITE_PACKAGES = (
    "import sys; sys.path.insert(0, {src!r}); from procobsrv.cli.main import main; "
    "sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize(
    ("argv", "feature"),
    [
        (["watch", "--output", "nats://127.0.0.1:1", "--duration", "0.2"], "--output nats://"),
        (["collect", "nats://127.0.0.1:1", "--duration", "0.2"], "collect"),
    ],
)
def test_without_the_nats_client_one_line_names_the_extra(argv: list[str], feature: str) -> None:
    """Installed without the ``nats`` extra (here: the package's sources with the standard
    library only, ``python -S``): one line saying what to install, status 2, no traceback."""
    src = str(Path(procobsrv.__file__).parents[1])
    run = subprocess.run(
        [sys.executable, "-S", "-c", WITHOUT_SITE_PACKAGES.format(src=src), *argv],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith(f"procobsrv: {feature} needs the NATS client (nats-py)")
    assert "pip install 'procobsrv[nats]'" in run.stderr
