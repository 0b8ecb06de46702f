"""RetrievalThread: drains the queue and offers each batch, in order, to every subscriber."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from procobsrv import QueueContainer, QueuedItem
from procobsrv.host import current_platform
from procobsrv.memory import batch_bytes
from procobsrv.retrieval import RetrievalThread
from tests.fakes.gauges import wait_until
from tests.fakes.scripted import items

#: Long enough for the thread to act on a loaded machine; a hang fails the test instead.
WAIT_S = 5.0


class Recorder:
    """Stands for a Subscription: keeps what it was offered."""

    def __init__(self) -> None:
        self.items: list[QueuedItem] = []
        self.lost = 0

    def offer(self, items: Sequence[QueuedItem], nbytes: int, lost: int) -> None:
        assert nbytes == batch_bytes(items)
        self.items += items
        self.lost += lost


@pytest.fixture
def container() -> Iterator[QueueContainer]:
    queue = QueueContainer(current_platform())
    yield queue
    queue.close()


def started(container: QueueContainer, *subscribers: Recorder) -> RetrievalThread:
    retrieval = RetrievalThread(current_platform(), container)
    retrieval.subscribers = subscribers  # type: ignore[assignment]
    retrieval.start()
    return retrieval


def test_every_subscriber_gets_every_batch_in_order_and_the_loss(
    container: QueueContainer,
) -> None:
    first, second = Recorder(), Recorder()
    retrieval = started(container, first, second)
    try:
        container.append(items(3), lost=2)
        container.append(items(2, start=10))
        assert wait_until(lambda: len(second.items) == 5, WAIT_S)
    finally:
        retrieval.stop()
        retrieval.close()
    assert first.items == second.items == items(3) + items(2, start=10)
    assert first.lost == second.lost == 2 and retrieval.received == 5


def test_on_shutdown_what_is_still_queued_is_handed_on(container: QueueContainer) -> None:
    recorder = Recorder()
    retrieval = RetrievalThread(current_platform(), container)
    retrieval.subscribers = (recorder,)  # type: ignore[assignment]
    container.append(items(4))
    retrieval.shutdown.set()  # asked to stop before it ever ran: the rest still goes out
    retrieval.start()
    retrieval.stop()
    retrieval.close()
    assert recorder.items == items(4)


def test_a_monitor_failure_is_handed_on_after_what_was_queued(container: QueueContainer) -> None:
    recorder = Recorder()
    failures: list[tuple[BaseException, int, bool]] = []
    retrieval = RetrievalThread(current_platform(), container)
    retrieval.subscribers = (recorder,)  # type: ignore[assignment]
    retrieval.on_failure = lambda error: failures.append(
        (error, len(recorder.items), retrieval.is_current())
    )
    error = RuntimeError("driver unloaded")
    container.append(items(3))
    container.fail(error)
    retrieval.start()
    try:
        assert wait_until(lambda: not retrieval.is_alive(), WAIT_S)  # it ends by itself
    finally:
        retrieval.stop()
        retrieval.close()
    assert failures == [(error, 3, True)]
