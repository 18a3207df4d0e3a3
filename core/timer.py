"""Disappearing messages (issue 17 item 4): a conversation's timer and what it makes of a
message's expiry. Pure: the callers pass the time.

A timer is a duration in ms (0: off). A message written while it is on carries
``expires = sent_at + timer`` in its content (devices erase it then) and as its envelope's
``expires`` (every node drops it then, wherever it is: mailbox, outbox, relay queue).
"""

from __future__ import annotations

import re

from . import limits
from .errors import LocalProtocolError

__all__ = ["MIN_TIMER_MS", "MAX_TIMER_MS", "TIMER_OFF", "parse_duration", "format_duration", "timer_problem", "expiry_of", "wake_delay_s"]

TIMER_OFF = 0
#: shorter would expire before a message crosses a slow link
MIN_TIMER_MS = 1000
#: a node keeps nothing longer than its envelope TTL anyway
MAX_TIMER_MS = limits.MAX_ENVELOPE_TTL_MS
_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_DURATION = re.compile(r"([1-9][0-9]{0,9})([smhdw])")


def timer_problem(timer_ms: int) -> str | None:
    """Why ``timer_ms`` cannot be a conversation's timer, or None."""
    if timer_ms == TIMER_OFF or MIN_TIMER_MS <= timer_ms <= MAX_TIMER_MS:
        return None
    return f"a timer is off or {format_duration(MIN_TIMER_MS)}..{format_duration(MAX_TIMER_MS)}"


def parse_duration(text: str) -> int:
    """"5s", "10m", "1h", "7d", "2w" or "off" as ms (0 for off); LocalProtocolError otherwise."""
    text = text.strip().lower()
    if text == "off":
        return TIMER_OFF
    match = _DURATION.fullmatch(text)
    if match is None:
        raise LocalProtocolError(f"not a duration: {text!r} (e.g. 5s, 10m, 1h, 7d, 2w, or off)", code="bad_timer")
    timer_ms = int(match[1]) * _UNITS_MS[match[2]]
    problem = timer_problem(timer_ms)
    if problem is not None:
        raise LocalProtocolError(problem, code="bad_timer")
    return timer_ms


def format_duration(timer_ms: int) -> str:
    """The largest whole unit: 3600000 -> "1h", 90000 -> "90s", 0 -> "off"."""
    if timer_ms == TIMER_OFF:
        return "off"
    for unit, size in sorted(_UNITS_MS.items(), key=lambda u: -u[1]):
        if timer_ms % size == 0:
            return f"{timer_ms // size}{unit}"
    return f"{timer_ms}ms"


def expiry_of(sent_at: int, timer_ms: int) -> int | None:
    """When a message written at ``sent_at`` under ``timer_ms`` disappears (None: timer off)."""
    return sent_at + timer_ms if timer_ms != TIMER_OFF else None


def wake_delay_s(now: int, expiries: list[int | None], *, longest_s: float) -> float:
    """How long to sleep (s) until the earliest of ``expiries`` (ms; None: nothing), at most
    ``longest_s`` (something earlier may arrive meanwhile), never negative."""
    due = [e for e in expiries if e is not None]
    if not due:
        return longest_s
    return max(0.0, min(longest_s, (min(due) - now) / 1000))

