"""watch(), awatch() and monitor() take named options only: an unsupported one is refused at
the call, naming the function the user called (not a private method of the scope)."""

from __future__ import annotations

import asyncio

import pytest

from procobsrv import CallbackHandler, QueuedItem, awatch, monitor, watch


class Nothing(CallbackHandler):
    def on_process_event(self, item: QueuedItem, param: object) -> None:
        pass


def test_watch_refuses_an_unknown_option_by_its_own_name() -> None:
    with pytest.raises(TypeError, match=r"^watch\(\) got an unexpected keyword argument 'match'"):
        watch(match="x")  # type: ignore[call-arg]


def test_awatch_refuses_an_unknown_option_by_its_own_name() -> None:
    async def call() -> None:
        awatch(match="x")  # type: ignore[call-arg]

    with pytest.raises(TypeError, match=r"^awatch\(\) got an unexpected keyword argument"):
        asyncio.run(call())


def test_monitor_refuses_an_unknown_option_by_its_own_name() -> None:
    with (
        pytest.raises(TypeError, match=r"^monitor\(\) got an unexpected keyword argument"),
        monitor(Nothing(), match="x"),  # type: ignore[call-arg]
    ):
        pass
