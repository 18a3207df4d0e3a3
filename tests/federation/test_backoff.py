"""federation/backoff.py: exponential backoff with full jitter, a cap, and reset (pure)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from sonet.federation.backoff import Backoff


def fixed(byte: int) -> Callable[[int], bytes]:
    return lambda n: bytes([byte]) * n


def test_the_largest_draw_follows_the_exponential_until_the_cap() -> None:
    backoff = Backoff(rng=fixed(0xFF), base=0.5, factor=2, cap=5)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.failures == 6


def test_the_smallest_draw_is_zero() -> None:
    backoff = Backoff(rng=fixed(0), base=0.5, cap=60)
    assert {backoff.next_delay() for _ in range(5)} == {0.0}


def test_random_draws_stay_within_the_ceiling_and_spread_out() -> None:
    backoff = Backoff(rng=os.urandom, base=1, factor=3, cap=60)
    for failures in range(8):
        delays = []
        for _ in range(20):
            backoff.failures = failures
            ceiling = backoff.ceiling()
            delays.append(backoff.next_delay())
        assert ceiling == min(60, 3**failures)
        assert all(0 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1, "full jitter draws different delays"


def test_reset_starts_over_at_the_base() -> None:
    backoff = Backoff(rng=fixed(0xFF), base=0.25, cap=8)
    for _ in range(10):
        backoff.next_delay()
    assert backoff.ceiling() == 8
    backoff.reset()
    assert backoff.failures == 0 and backoff.next_delay() == 0.25


def test_very_many_failures_neither_overflow_nor_pass_the_cap() -> None:
    backoff = Backoff(rng=fixed(0xFF), base=0.5, factor=10, cap=60)
    backoff.failures = 100_000
    assert backoff.next_delay() == 60


@pytest.mark.parametrize("kwargs", [{"base": 0}, {"base": -1}, {"factor": 0.5}, {"base": 2, "cap": 1}])
def test_nonsense_parameters_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Backoff(rng=os.urandom, **kwargs)
