"""watch(), awatch() and monitor() take named options only: an unsupported one is refused at
the call, naming the function the user called (not a private method of the scope)."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect

import pytest

from procobsrv import ApplicationScope, CallbackHandler, QueuedItem, awatch, monitor, watch
from procobsrv.streams import StreamOptions


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


def test_the_streams_options_are_one_typed_set_the_same_as_open_streams() -> None:
    # watch() and awatch() build one StreamOptions (typed, not a dict passed as **Any): its
    # fields are open_stream's options, and both functions take them with its defaults.
    fields = {f.name: f.default for f in dataclasses.fields(StreamOptions)}
    opened = inspect.signature(ApplicationScope.open_stream).parameters
    # sieve: what procobsrv serve keeps for one user, not an option of a user's stream
    assert set(fields) == set(opened) - {"self", "name", "sieve"}
    for function in (watch, awatch):
        params = inspect.signature(function).parameters
        assert {name: params[name].default for name in fields} == fields, function
        assert {name: opened[name].default for name in fields} == fields
