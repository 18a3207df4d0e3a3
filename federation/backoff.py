"""Retry delays towards a peer: exponential backoff with full jitter and a cap (pure).

The n-th consecutive failure waits a uniformly random time in [0, min(cap, base * factor**n)]
("full jitter": many nodes retrying the same peer spread out instead of arriving together).
``reset()`` after the peer is seen again, so a node that comes back is retried at once rather
than after a long back-off earned while it was down.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Backoff", "DEFAULT_BASE_S", "DEFAULT_FACTOR", "DEFAULT_CAP_S"]

DEFAULT_BASE_S = 0.5
DEFAULT_FACTOR = 2.0
DEFAULT_CAP_S = 60.0

_UNIT = 2**53  # random integers of 53 bits map exactly onto floats in [0, 1]


class Backoff:
    def __init__(
        self,
        *,
        rng: Callable[[int], bytes],
        base: float = DEFAULT_BASE_S,
        factor: float = DEFAULT_FACTOR,
        cap: float = DEFAULT_CAP_S,
    ) -> None:
        if base <= 0 or factor < 1 or cap < base:
            raise ValueError("backoff needs base > 0, factor >= 1 and cap >= base")
        self._rng = rng
        self.base = base
        self.factor = factor
        self.cap = cap
        #: consecutive failures since the last reset
        self.failures = 0

    def ceiling(self) -> float:
        """The largest delay the next failure can draw."""
        # min() before the power would overflow: factor**failures grows without bound
        exponent = min(self.failures, 1024)
        try:
            return min(self.cap, self.base * self.factor**exponent)
        except OverflowError:
            return self.cap

    def next_delay(self) -> float:
        """Record one more failure; seconds to wait before the next attempt."""
        ceiling = self.ceiling()
        self.failures += 1
        draw = int.from_bytes(self._rng(8), "big") >> 11  # 53 random bits
        return ceiling * draw / (_UNIT - 1)

    def reset(self) -> None:
        self.failures = 0
