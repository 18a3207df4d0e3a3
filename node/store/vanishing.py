"""Which stored envelopes are disappearing messages, whose ids a node keeps no longer than the
envelopes themselves (issue 17 item 4; docs/security.md "What each node keeps").

A node cannot read a message's timer; it sees the envelope's ``expires``. An ordinary envelope
lives the default TTL (30 days) from when it was written, a timed one only as long as its
timer. So an envelope that reaches this node with less than ``SHORT_LIVED_MS`` to live is taken
as a disappearing message's: its dedup record (``acked_ids``) keeps its expiry to the ms and
goes with it, and its sender's delivery-status row (``deliveries.vanishes``) goes then too.
Longer-lived ones keep the coarser rules (an expiry rounded up to the end of its UTC day; a
status row kept a grace period), which do not tell when each message arrived. The price: an
ordinary envelope that took more than a day to arrive is treated as a timed one (its dedup
record then shows its expiry exactly, and goes at it).
"""

from __future__ import annotations

from sonet.core import limits

__all__ = ["SHORT_LIVED_MS", "is_short_lived"]

#: an envelope with less than this to live when it arrives is a disappearing message's
SHORT_LIVED_MS = limits.DEFAULT_ENVELOPE_TTL_MS - 24 * 3600 * 1000


def is_short_lived(expires: int, now: int) -> bool:
    """The envelope expiring at ``expires``, arriving at ``now``, is a disappearing message's."""
    return expires - now < SHORT_LIVED_MS
