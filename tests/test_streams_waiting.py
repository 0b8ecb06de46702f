"""An awatch() consumer waits on its wake-up alone: it does not poll while nothing happens."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest

from procobsrv import awatch
from procobsrv.linux.sync import EventFd
from procobsrv.platform import Batch, KernelSource
from procobsrv.subscription import Subscription

pytestmark = pytest.mark.timeout(30)

#: How long the consumer waits for an event that never comes.
IDLE_S = 1.0


class SilentSource(KernelSource):
    """A kernel source with nothing to say: its wait handle is never signalled."""

    def __init__(self) -> None:
        self._event: EventFd | None = None

    def open(self) -> None:
        self._event = EventFd()

    @property
    def wait_handle(self) -> int:
        assert self._event is not None
        return self._event.wait_handle

    def fetch_batch(self) -> Batch:
        return Batch()

    def close(self) -> None:
        if self._event is not None:
            self._event.close()
            self._event = None


def test_an_idle_async_consumer_looks_at_its_window_only_when_woken_or_at_its_deadline() -> None:
    async def main() -> list[object]:
        return [event async for event in awatch(duration=IDLE_S, source=SilentSource())]

    with mock.patch.object(
        Subscription, "take", autospec=True, side_effect=Subscription.take
    ) as take:
        assert asyncio.run(main()) == []
    # Once before waiting, once when the duration is over: no re-check in between.
    assert take.call_count == 2, f"the consumer looked {take.call_count} times in {IDLE_S} s"
