"""Token buckets for abuse and load control (pure: the caller passes the time).

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; a request
costing ``n`` tokens passes only if ``n`` are there. ``Limiter`` keeps one bucket per key (a
peer, a device, an address) in a bounded LRU, so a stream of new keys can neither grow it nor slow it down.
"""

from __future__ import annotations

from collections import OrderedDict
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

    def available(self, now_ms: int) -> float:
        """The tokens there now."""
        self._refill(now_ms)
        return self.tokens

    def full(self, now_ms: int) -> bool:
        self._refill(now_ms)
        return self.tokens >= self.rate.burst


class Limiter:
    """One bucket per key, all with the same rate, for at most ``max_keys`` keys.

    Keys may come from unauthenticated parties (a fresh device key per connection), so the
    table is a bounded LRU: past ``max_keys`` the least recently used bucket is forgotten, in
    O(1). A forgotten key starts again with a full bucket; with the bound far above the number
    of honest active keys, that only helps someone who also keeps ``max_keys`` other keys busy.
    """

    MAX_KEYS = 10_000

    def __init__(self, rate: Rate, *, max_keys: int = MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("a limiter needs room for at least one key")
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: OrderedDict[object, Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: object, now_ms: int, cost: float = 1.0) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = Bucket(self.rate, now_ms)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now_ms, cost)
