"""`watch --output nats://...` and `collect` against real NATS servers started here."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import nats.js.errors
import pytest
from benchmarks.harness import run_storm

from procobsrv import EventKind, QueuedItem
from procobsrv.agent import RecordMaker
from tests.fakes.gauges import wait_until
from tests.fakes.nats import (
    NatsServer,
    cluster,
    free_port,
    line_within,
    single,
    stop_watch,
    stream_contents,
    stream_leader,
)
from tests.fakes.watch import run_markers, validate_lines, watching

NATS_POLL = 0.05  # seconds between two queries of the servers while waiting


def target(*servers: NatsServer) -> str:
    return "nats://" + ",".join(s.url.removeprefix("nats://") for s in servers)


def events(contents: list[tuple[str, str, Any]]) -> list[dict[str, Any]]:
    return [r for _, _, r in contents if r["kind"] != "lost"]


def output_losses(contents: list[tuple[str, str, Any]]) -> int:
    return sum(
        r["count"] for _, _, r in contents if r["kind"] == "lost" and r["reason"] == "output"
    )


def assert_all_published(counts: dict[str, int], contents: list[tuple[str, str, Any]]) -> None:
    """Every event the agent saw was acknowledged, and the stream holds exactly those."""
    assert counts["overflowed"] == 0
    assert counts["published"] == counts["total"] == len(events(contents))


def readable_contents(urls: list[str]) -> list[tuple[str, str, Any]]:
    """The stream's messages; none while the agent has not created the stream yet."""
    try:
        return stream_contents(urls)
    except nats.js.errors.NotFoundError:
        return []


def has_pids(records: list[dict[str, Any]], pids: list[int]) -> bool:
    seen = {(r["pid"], r["kind"]) for r in records}
    return all((pid, k) in seen for pid in pids for k in ("created", "exited"))


def test_send_never_blocks_when_no_server_answers() -> None:
    """The retrieval thread's side only appends: with nothing listening, 10,000 records go
    through send() at once, what does not fit is counted, and close() gives up in time."""
    from procobsrv.agent.jetstream import JetStreamSink

    sink = JetStreamSink(f"nats://127.0.0.1:{free_port()}", buffer=1000, close_timeout=1)
    maker = RecordMaker()
    record = maker.event(QueuedItem(EventKind.EXEC, 1, 0, 1.0, monotonic_ns=1))
    sender = threading.Thread(target=lambda: [sink.send(record) for _ in range(10_000)])
    sender.start()
    sender.join(timeout=30)
    assert not sender.is_alive()
    sink.close()
    assert sink.overflowed == 9000 and sink.published == 0 and sink.unsent == 1000
    assert "9000 lost" in sink.summary() and "1000 not sent" in sink.summary()


@pytest.mark.kernel
def test_a_marker_exec_arrives_in_the_stream_with_its_argv(nats_server: NatsServer) -> None:
    marker_argv = ["sh", "-c", "sleep 0.5; true", "nats-marker"]  # lives until /proc is read
    with watching("--output", nats_server.url) as watch:
        subprocess.run(marker_argv, check=True)
        run_markers("nats-marker")
        counts = stop_watch(watch)
    contents = stream_contents([nats_server.url])
    validate_lines([json.dumps(r) for _, _, r in contents])
    host = re.sub(r"[.*>\s]", "_", socket.gethostname())
    marker = [
        (subject, r)
        for subject, _, r in contents
        if r["kind"] == "exec" and r["command_line"] == marker_argv
    ]
    assert marker, "the marker's exec is not in the stream"
    assert marker[0][0] == f"procobsrv.{host}.exec"
    assert all(msg_id == r["id"] for _, msg_id, r in contents)
    assert_all_published(counts, contents)


@pytest.mark.kernel
@pytest.mark.usefixtures("connector")
def test_a_cluster_node_killed_in_a_storm_loses_and_duplicates_nothing(
    nats_servers: list[NatsServer], tmp_path: Path
) -> None:
    nodes = cluster(nats_servers, tmp_path)
    urls = [n.url for n in nodes]
    with watching("--output", target(*nodes), "--nats-replicas", "3") as watch:
        subprocess.run(["true"], check=True)  # the first event makes the sink create the stream

        def leader() -> str | None:
            try:
                return stream_leader(urls)
            except Exception:
                return None

        assert wait_until(lambda: leader() is not None, 30, interval=NATS_POLL)
        victim = next(n for n in nodes if n.name == leader())
        storms: list[Any] = []
        storm = threading.Thread(target=lambda: storms.append(run_storm(2, 2000)))
        storm.start()
        time.sleep(0.5)
        victim.kill()  # the stream's leader: the cluster elects another during the storm
        storm.join(timeout=120)
        survivors = [n.url for n in nodes if n is not victim]
        pids = [p[0] for p in storms[0].procs]

        # The new leader may take seconds to accept again, longer than the exit's flush
        # waits on a loaded machine: stop once the storm is in the stream (or the wait is over).
        def stream_holds_the_storm() -> bool:
            try:
                return has_pids(events(stream_contents(survivors)), pids)
            except Exception:  # no leader yet: the stream cannot be read
                return False

        wait_until(stream_holds_the_storm, 90, interval=1)
        counts = stop_watch(watch)
    contents = stream_contents(survivors)
    ids = [msg_id for _, msg_id, _ in contents]
    assert len(ids) == len(set(ids)), "a message is in the stream twice"
    assert_all_published(counts, contents)
    assert has_pids(events(contents), pids)


@pytest.mark.kernel
def test_events_during_a_server_restart_arrive(nats_server: NatsServer) -> None:
    with watching("--output", nats_server.url) as watch:
        run_markers("before-restart")
        assert wait_until(lambda: bool(stream_contents([nats_server.url])), interval=NATS_POLL)
        nats_server.kill()
        pids = run_markers("while-down")
        nats_server.start().ready()  # same port, same store
        counts = stop_watch(watch)
    contents = stream_contents([nats_server.url])
    assert has_pids(events(contents), pids)
    assert_all_published(counts, contents)


@pytest.mark.kernel
def test_a_server_down_longer_than_the_buffer_loses_an_exact_count(nats_server: NatsServer) -> None:
    with watching("--output", nats_server.url, "--nats-buffer", "50") as watch:
        run_markers("before-outage")
        assert wait_until(lambda: bool(readable_contents([nats_server.url])), interval=NATS_POLL)
        nats_server.kill()
        for _ in range(60):  # 180 events at least: more than the buffer holds
            subprocess.run(["true"], check=True)
        time.sleep(0.5)
        nats_server.start().ready()
        subprocess.run(["true"], check=True)  # an event after the return: the loss goes out
        assert wait_until(  # a restarted server may take seconds to serve JetStream again
            lambda: output_losses(readable_contents([nats_server.url])) > 0, 30, NATS_POLL
        )
        counts = stop_watch(watch)
    contents = stream_contents([nats_server.url])
    lost = output_losses(contents)
    assert counts["overflowed"] > 0 and lost == counts["overflowed"]
    assert counts["published"] == len(events(contents))
    assert counts["published"] + lost == counts["total"]  # published + reported lost == produced
    validate_lines([json.dumps(r) for _, _, r in contents if r["kind"] == "lost"])


def test_a_pending_loss_goes_out_once_acks_free_room_without_another_event(
    nats_servers: list[NatsServer], tmp_path: Path
) -> None:
    """Events that found the buffer full while the server was away: once the server is back
    and the buffered ones are acked, the loss record that counts them follows, with no
    further event. Before 2a325ff only a later send() (the next process to start on the
    host: maybe never) or close() queued it."""
    from procobsrv.agent.jetstream import JetStreamSink

    server = single(nats_servers, tmp_path)
    sink = JetStreamSink(server.url, buffer=20, close_timeout=5)
    maker = RecordMaker()
    sent = [
        maker.event(QueuedItem(EventKind.EXEC, 20_000 + i, 1, time.time(), monotonic_ns=1 + i))
        for i in range(31)
    ]
    try:
        sink.send(sent[0])
        assert wait_until(lambda: sink.published == 1, 30, NATS_POLL)
        server.kill()
        for record in sent[1:]:  # 20 fit in the buffer, 10 do not
            sink.send(record)
        assert sink.overflowed == 10
        server.start().ready()  # same port, same store
        assert wait_until(
            lambda: output_losses(readable_contents([server.url])) == 10, 30, NATS_POLL
        ), sink.stats()
        assert sink.published == 21
    finally:
        sink.close()
    contents = stream_contents([server.url])
    assert [r["id"] for r in events(contents)] == [r["id"] for r in sent[:21]]
    assert [r["kind"] for _, _, r in contents] == ["exec"] * 21 + ["lost"]


@pytest.mark.kernel
def test_a_stream_the_server_refuses_is_said_at_once_and_in_the_summary(
    nats_server: NatsServer,
) -> None:
    """`--nats-replicas 3` on one server: the server's reason at ERROR within seconds while
    the watch runs, and the summary blames it, not "servers unreachable"."""
    with watching("--output", nats_server.url, "--nats-replicas", "3") as watch:
        subprocess.run(["true"], check=True)
        assert watch.stderr is not None
        said = line_within(watch.stderr, 10)
        assert said.startswith("procobsrv: error: ") and "replicas > 1 not supported" in said, said
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=60)
    assert "servers unreachable" not in err, err
    assert re.search(r"\d+ not sent at exit \(the server refused: replicas > 1", err), err
