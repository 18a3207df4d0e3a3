"""Token buckets for abuse and load control (pure: the caller passes the time).

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request
costing ``n`` tokens passes only if ``n`` are there. ``Limiter`` keeps one bucket per key (a
peer, a device) and forgets idle full buckets so a stream of new keys cannot grow it forever.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Rate", "Bucket", "Limiter"]


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst <= 0:
            raise ValueError("a rate needs a positive refill and burst")


class Bucket:
    __slots__ = ("rate", "tokens", "at_ms")

    def __init__(self, rate: Rate, now_ms: int) -> None:
        self.rate = rate
        self.tokens = rate.burst
        self.at_ms = now_ms

    def _refill(self, now_ms: int) -> None:
        elapsed = max(0, now_ms - self.at_ms) / 1000
        self.tokens = min(self.rate.burst, self.tokens + elapsed * self.rate.per_second)
        self.at_ms = max(self.at_ms, now_ms)

    def take(self, now_ms: int, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if they are there; False (nothing spent) if not."""
        self._refill(now_ms)
        if cost > self.tokens:
            return False
        self.tokens -= cost
        return True

    def full(self, now_ms: int) -> bool:
        self._refill(now_ms)
        return self.tokens >= self.rate.burst


class Limiter:
    """One bucket per key, all with the same rate."""

    #: past this many buckets, full (idle) ones are dropped on the next insert
    MAX_BUCKETS = 10_000

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._buckets: dict[object, Bucket] = {}

    def allow(self, key: object, now_ms: int, cost: float = 1.0) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.MAX_BUCKETS:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now_ms)}
            bucket = self._buckets[key] = Bucket(self.rate, now_ms)
        return bucket.take(now_ms, cost)
