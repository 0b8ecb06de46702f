"""agent/nats_extra.py: a missing NATS client becomes one MonitorError saying what to install;
any other missing module is not disguised as it."""

from __future__ import annotations

import pytest

from procobsrv import MonitorError
from procobsrv.agent.nats_extra import needs_nats


@pytest.mark.parametrize("missing", ["nats", "nats.js.api"])
def test_the_missing_client_names_the_extra(missing: str) -> None:
    with pytest.raises(MonitorError) as caught, needs_nats("--output nats://"):
        raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)
    assert str(caught.value).startswith("--output nats:// needs the NATS client (nats-py)")
    assert "pip install 'procobsrv[nats]'" in str(caught.value)
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_another_missing_module_is_raised_as_it_is() -> None:
    with pytest.raises(ModuleNotFoundError, match="natsort"), needs_nats("collect"):
        raise ModuleNotFoundError("No module named 'natsort'", name="natsort")
