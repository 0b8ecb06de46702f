"""What every fuzz test shares: the example budget, seeds, random bytes and mutations.

The budget comes from PROCOBSRV_FUZZ_EXAMPLES (CI: the default below; ``make fuzz``:
100,000 per test).
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("PROCOBSRV_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# A 100,000-example run of one test takes minutes: lift the suite's per-test timeout with it.
FUZZ_TIMEOUT = pytest.mark.timeout(max(300, EXAMPLES // 50))

# The structured generators draw from one hypothesis-seeded Random: hypothesis spends some
# 100 us per draw, which would make a 100,000-example run take hours; a failure still prints
# the seed that reproduces it.
seeds = st.integers(0, 2**64 - 1)


def random_bytes(rng: random.Random, low: int, high: int) -> bytes:
    return rng.randbytes(rng.randint(low, high))


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Overwrite a few bytes, cut somewhere, append a little garbage."""
    out = bytearray(data)
    for _ in range(rng.randint(0, 8)):
        out[rng.randrange(len(out))] = rng.choice([0, 0xFF, rng.getrandbits(8)])
    return bytes(out[: rng.randint(0, len(out))]) + random_bytes(rng, 0, rng.choice([0, 0, 40]))
