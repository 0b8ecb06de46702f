"""agent/cli.py: the `schema` and `collect` subcommands and the options of `watch --output`."""

from __future__ import annotations

import argparse
import json

import pytest

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
