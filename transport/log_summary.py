"""Rate-limited log lines about refused and abusive connections: events are counted and one
summary line per interval says how many of each there were (and the busiest source address),
so a flood of ten thousand bad connections costs ten log lines, not ten thousand."""

from __future__ import annotations

import logging
from collections import Counter

import trio

__all__ = ["LogSummary", "OncePer", "SUMMARY_INTERVAL_S"]

#: how often a summary line may be written
SUMMARY_INTERVAL_S = 10.0


class LogSummary:
    def __init__(self, log: logging.Logger, *, what: str = "connections", interval_s: float = SUMMARY_INTERVAL_S) -> None:
        self._log = log
        self._what = what
        self._interval_s = interval_s
        self._events: Counter[str] = Counter()
        self._addresses: Counter[str] = Counter()
        #: every event counted since the start (never reset)
        self.totals: Counter[str] = Counter()
        #: when the last line was written (trio time; None before the first event)
        self._last: float | None = None

    def count(self, event: str, address: str | None = None) -> None:
        """Count one event; the line is written by ``run`` or, without it, by the first
        count after an interval has passed."""
        self._events[event] += 1
        self.totals[event] += 1
        if address is not None:
            self._addresses[address] += 1
        now = trio.current_time()
        if self._last is None:
            self._last = now
        elif now - self._last >= self._interval_s:
            self.flush()

    @property
    def counts(self) -> dict[str, int]:
        """What was counted since the last line (tests)."""
        return dict(self._events)

    def flush(self) -> str | None:
        """Write the summary of what was counted (if anything); return the line."""
        if not self._events:
            return None
        parts = ", ".join(f"{event} {n}" for event, n in sorted(self._events.items()))
        line = f"{self._what} in the last {self._interval_s:g} s: {parts}"
        if self._addresses:
            address, n = self._addresses.most_common(1)[0]
            line += f" (most from {address}: {n})"
        self._events.clear()
        self._addresses.clear()
        try:
            self._last = trio.current_time()
        except RuntimeError:  # outside trio (a test, a final flush at exit)
            self._last = None
        self._log.warning("%s", line)
        return line

    async def run(self) -> None:
        """Flush every interval until cancelled (and once more then)."""
        try:
            while True:
                await trio.sleep(self._interval_s)
                self.flush()
        finally:
            self.flush()


class OncePer:
    """Whether a line about ``key`` is due: at most one per ``interval`` per key, in the units
    of the clock the caller passes (trio seconds, a store's ms). At most ``max_keys`` keys are
    remembered; past them all are forgotten (one line more each, never unbounded memory)."""

    def __init__(self, interval: float, *, max_keys: int = 1024) -> None:
        self._interval = interval
        self._max_keys = max_keys
        self._last: dict[str, float] = {}

    def due(self, key: str, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return False
        if last is None and len(self._last) >= self._max_keys:
            self._last.clear()
        self._last[key] = now
        return True
