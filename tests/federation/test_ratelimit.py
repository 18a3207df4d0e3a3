"""Token buckets (pure): refill, cost, and a bounded key table that stays O(1) per request."""

from __future__ import annotations

import pytest

from sonet.federation.ratelimit import Bucket, Limiter, Rate


def test_a_bucket_passes_its_burst_then_refills_at_its_rate() -> None:
    bucket = Bucket(Rate(per_second=2, burst=3), now_ms=0)
    assert [bucket.take(0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(400)  # 0.8 tokens
    assert bucket.take(500)  # 1 token after half a second at 2/s
    assert not bucket.take(500, cost=1)
    assert bucket.take(10_000, cost=3) and not bucket.take(10_000, cost=0.5)  # capped at the burst


def test_a_refused_request_spends_nothing() -> None:
    bucket = Bucket(Rate(per_second=1, burst=5), now_ms=0)
    assert not bucket.take(0, cost=6)
    assert bucket.take(0, cost=5)


def test_keys_have_separate_buckets() -> None:
    limiter = Limiter(Rate(per_second=1, burst=1))
    assert limiter.allow("a", 0) and not limiter.allow("a", 0)
    assert limiter.allow("b", 0)


def test_the_key_table_is_bounded_and_forgets_the_least_recently_used() -> None:
    limiter = Limiter(Rate(per_second=0.001, burst=1), max_keys=3)
    for key in "abc":
        assert limiter.allow(key, 0)
    assert not limiter.allow("a", 0)  # "a" is now the most recently used
    assert limiter.allow("d", 0)  # evicts "b", the least recently used
    assert len(limiter) == 3
    assert not limiter.allow("a", 0) and not limiter.allow("c", 0)  # still remembered, still empty
    assert limiter.allow("b", 0)  # forgotten: starts again with a full bucket
    for i in range(10_000):  # a stream of new keys never grows the table
        limiter.allow(i, 0)
    assert len(limiter) == 3


def test_nonsense_rates_and_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        Rate(per_second=0, burst=1)
    with pytest.raises(ValueError):
        Limiter(Rate(per_second=1, burst=1), max_keys=0)
