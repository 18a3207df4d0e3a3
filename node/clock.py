"""The node's wall clock, in its own module: the command line stamps invites and audit entries
with it without importing the server (node/app.py) that uses it too."""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    """The wall clock in ms since the epoch: the node's clock unless it is given another."""
    return time.time_ns() // 1_000_000
