"""Rate-limited log lines about refused and abusive connections: events are counted and one
summary line per interval says how many of each there were (and the busiest source address),
so a flood of ten thousand bad connections costs ten log lines, not ten thousand."""

from __future__ import annotations

import logging
from collections import Counter

import trio

__all__ = ["LogSummary", "SUMMARY_INTERVAL_S"]

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

    def count(self, event: str, address: str | None = None) -> None:
        self._events[event] += 1
        self.totals[event] += 1
        if address is not None:
            self._addresses[address] += 1

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
