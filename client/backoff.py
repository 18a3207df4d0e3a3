"""How long a device waits before it tries its home node again (a live session,
client/live.py): 0.5 s doubling up to 30 s, each wait drawn from [3/4, 5/4] of that step so
that the devices of a node that comes back do not all knock at the same moment."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Backoff", "FIRST_S", "MAX_S"]

FIRST_S = 0.5
MAX_S = 30.0


class Backoff:
    def __init__(self, rng: Callable[[int], bytes], *, first_s: float = FIRST_S, max_s: float = MAX_S) -> None:
        self._rng = rng
        self._first = first_s
        self._max = max_s
        self._step = first_s

    def next(self) -> float:
        """The wait before the next try (seconds), and a longer step for the one after."""
        spread = int.from_bytes(self._rng(4), "big") / 2**32  # in [0, 1)
        wait = min(self._max, self._step * (0.75 + spread / 2))
        self._step = min(self._max, self._step * 2)
        return round(wait, 3)

    def reset(self) -> None:
        """Connected again: the next failure starts from the first step."""
        self._step = self._first
