"""QueueContainer under concurrency, with both overflow policies."""

from __future__ import annotations

import threading

import pytest

from procobsrv import EventKind, OverflowPolicy, QueueContainer, QueuedItem
from procobsrv.container import CHUNK
from procobsrv.host import current_platform


def item(n: int) -> QueuedItem:
    return QueuedItem(EventKind.CREATED, n, 0, 0.0)


@pytest.fixture
def platform():  # type: ignore[no-untyped-def]
    return current_platform()


def test_event_is_set_exactly_while_items_wait(platform) -> None:  # type: ignore[no-untyped-def]
    q = QueueContainer(platform)
    assert not q.element_available.is_set()
    q.append([item(1), item(2)])
    assert q.element_available.is_set()
    items, lost, _ = q.drain()
    assert [i.process_id for i in items] == [1, 2] and lost == 0
    assert not q.element_available.is_set()
    q.append([], lost=3)  # a loss alone is news too
    assert q.element_available.is_set()
    items, lost, _ = q.drain()
    assert list(items) == [] and lost == 3
    q.close()


@pytest.mark.parametrize("policy", list(OverflowPolicy))
def test_overflow_is_bounded_and_counted(platform, policy) -> None:  # type: ignore[no-untyped-def]
    q = QueueContainer(platform, limit=5, policy=policy)
    q.append([item(n) for n in range(4)])
    q.append([item(n) for n in range(4, 8)], lost=1)
    items, lost, _ = q.drain()
    kept = [i.process_id for i in items]
    assert len(kept) == 5 and lost == 1 + 3 and q.overflowed == 3
    assert kept == ([3, 4, 5, 6, 7] if policy is OverflowPolicy.DROP_OLDEST else [0, 1, 2, 3, 4])
    q.close()


def test_concurrent_producers_and_consumer_lose_nothing(platform) -> None:  # type: ignore[no-untyped-def]
    q = QueueContainer(platform, limit=10**7)
    producers, per_producer, batch = 4, 20_000, 50
    got: list[QueuedItem] = []
    done = threading.Event()
    waiter = platform.new_waiter([q.element_available.wait_handle])

    def consume() -> None:
        while len(got) < producers * per_producer:
            if waiter.wait(5.0) is None:
                break
            got.extend(q.drain()[0])
        done.set()

    def produce(base: int) -> None:
        for start in range(0, per_producer, batch):
            q.append([item(base + n) for n in range(start, start + batch)])

    consumer = threading.Thread(target=consume)
    consumer.start()
    threads = [threading.Thread(target=produce, args=(k * 10**6,)) for k in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done.wait(10)
    consumer.join()
    assert len(got) == producers * per_producer
    for k in range(producers):  # each producer's items arrive once, in its order
        mine = [i.process_id for i in got if k * 10**6 <= i.process_id < (k + 1) * 10**6]
        assert mine == [k * 10**6 + n for n in range(per_producer)]
    waiter.close()
    q.close()


def test_a_drain_takes_a_chunk_at_a_time_and_the_batch_in_hand_counts_until_done(
    platform,  # type: ignore[no-untyped-def]
) -> None:
    q = QueueContainer(platform, limit=CHUNK + 100)
    q.append([item(n) for n in range(CHUNK + 50)])
    first = q.drain()
    assert [i.process_id for i in first.items] == list(range(CHUNK))
    assert q.element_available.is_set()  # 50 still wait
    assert len(q) == CHUNK + 50  # the batch in hand still counts...
    q.append([item(n) for n in range(1000, 1100)])  # ...so room is made among the waiting
    assert q.overflowed == 50  # (DROP_OLDEST: the 50 that waited, not the batch in hand)
    q.done()
    assert len(q) == 100
    rest = q.drain()
    assert [i.process_id for i in rest.items] == list(range(1000, 1100))
    assert rest.lost == 50 and not q.element_available.is_set()
    q.close()
