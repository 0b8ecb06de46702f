"""The end-to-end hold bound that docs/architecture.md states is the constants' sum."""

from __future__ import annotations

import re
from pathlib import Path

from procobsrv.cli.output import LINGER
from procobsrv.process_monitor import HOLD_S

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def test_the_documented_watch_hold_bound_is_hold_s_plus_linger() -> None:
    text = " ".join(ARCHITECTURE.read_text().split())
    found = re.search(r"`HOLD_S` \+ `LINGER` = (\d+) \+ (\d+) = \*\*(\d+) ms\*\*", text)
    assert found, "architecture.md states no end-to-end bound for watch"
    hold, linger, total = (int(g) for g in found.groups())
    assert (hold, linger) == (round(HOLD_S * 1000), round(LINGER * 1000))
    assert total == hold + linger
    assert "sees the whole machine" in text
