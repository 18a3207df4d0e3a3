"""Live session states kept between messages, so a device does not rebuild every session's
ratchet keys (X25519 and ML-KEM-768 key objects) from its stored record for each message.

The stored record stays the source of truth: a cached state is used only when the record just
read from the store is, byte for byte, the record that state was saved as. Anything else (another
process advanced the session, a transaction rolled back, the session was replaced) loads the
record afresh and drops the stale entry, so the cache can never resurrect an old chain key. A
state is remembered only after its record was handed to the store, and it replaces its
predecessor, whose keys are then no longer referenced from here.
"""

from __future__ import annotations

from collections import OrderedDict

from sonet.core.crypto import ct_equal
from sonet.core.ratchet import SessionState

__all__ = ["SessionCache", "DEFAULT_SIZE"]

#: sessions kept live; a device talks to few devices at once
DEFAULT_SIZE = 64


class SessionCache:
    """A bounded LRU of ``(address, device) -> (record bytes, SessionState)``."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("a session cache holds at least one session")
        self._size = size
        self._entries: OrderedDict[tuple[str, int], tuple[bytes, SessionState]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def load(self, address: str, device: int, record: bytes) -> SessionState:
        """The state of ``record`` (just read from the store): the live one if it is the
        record last remembered for that device, else decoded (LocalProtocolError if damaged)."""
        key = (address, device)
        entry = self._entries.get(key)
        if entry is not None:
            # the record holds secrets: compare in constant time
            if ct_equal(entry[0], record):
                self._entries.move_to_end(key)
                return entry[1]
            del self._entries[key]
        return SessionState.from_bytes(record)

    def remember(self, address: str, device: int, record: bytes, state: SessionState) -> None:
        """``state`` is now stored as ``record``; evicts the least recently used session."""
        key = (address, device)
        self._entries[key] = (record, state)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, address: str, device: int) -> None:
        self._entries.pop((address, device), None)
