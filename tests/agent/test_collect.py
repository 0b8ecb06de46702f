"""`procobsrv collect`: a durable JetStream consumer that filters and resumes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.nats import NatsServer, stop_watch
from tests.fakes.watch import validate_lines, watching


@pytest.mark.kernel
def test_collect_filters_and_resumes_where_it_stopped(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    out = tmp_path / "collected.jsonl"
    collect = [
        sys.executable,
        "-m",
        "procobsrv",
        "collect",
        nats_server.url,
        "--durable",
        "t",
        "--match",
        "batch-marker",
        "--kind",
        "exec",
        "--output",
        str(out),
        "--duration",
        "2",
    ]
    for tag in ("first-batch-marker", "second-batch-marker"):
        with watching("--output", nats_server.url) as watch:
            for _ in range(2):  # alive long enough for its argv to be read at exec
                subprocess.run(["sh", "-c", "sleep 0.5; true", tag], check=True)
            stop_watch(watch)
        done = subprocess.run(collect, timeout=60, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    records = validate_lines(lines)
    tags = [" ".join(r["command_line"]) for r in records]
    assert all(r["kind"] == "exec" for r in records)
    first = [t for t in tags if "first-batch-marker" in t]
    second = [t for t in tags if "second-batch-marker" in t]
    assert len(first) == len(second) == 2, tags  # not read twice: the consumer resumed
    assert tags.index(second[0]) > tags.index(first[-1])
