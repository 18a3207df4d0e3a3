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

from sonet.core.crypto import MlKemKeyPair, ct_equal
from sonet.core.crypto.expanded import ExpandedKeys
from sonet.core.ratchet import SessionState

__all__ = ["SessionCache", "DEFAULT_SIZE", "KEYS_PER_SESSION"]

#: sessions kept live; a device talks to few devices at once
DEFAULT_SIZE = 64
#: ML-KEM keys kept per live session: a pq-mode session's current and previous key (a hybrid
#: one holds at most one, its post-quantum epoch's), and as many again for the earlier sessions
#: tried when the current one does not decrypt
KEYS_PER_SESSION = 4


def _kem_keys(state: SessionState) -> tuple[tuple[bytes | None, MlKemKeyPair | None], ...]:
    """The ML-KEM key pairs ``state`` holds, by seed."""
    return ((state.own_kem, state.own_kem_key), (state.prev_kem, state.prev_kem_key), (state.pq_seed, state.pq_key))


def _kem_seeds_changed(old: SessionState, new: SessionState) -> bool:
    """Whether ``new`` holds other ML-KEM seeds than ``old``. A successor passes its
    predecessor's seeds on as the same objects until a turn or an epoch replaces one, so most
    messages drop nothing (identity, not equality: no comparison of secrets)."""
    return not (old.own_kem is new.own_kem and old.prev_kem is new.prev_kem and old.pq_seed is new.pq_seed)


class SessionCache:
    """A bounded LRU of ``(address, device) -> (record bytes, SessionState)``."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("a session cache holds at least one session")
        self._size = size
        self._entries: OrderedDict[tuple[str, int], tuple[bytes, SessionState]] = OrderedDict()
        self._kem_keys: ExpandedKeys[MlKemKeyPair] = ExpandedKeys(MlKemKeyPair, size * KEYS_PER_SESSION)

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
            try:
                state = self.decode(record)  # may reuse the stale state's keys (no turn since)
            except BaseException:
                self._drop_keys(entry[1], None)
                raise
            self._drop_keys(entry[1], state)
            return state
        return self.decode(record)

    def decode(self, record: bytes) -> SessionState:
        """Decode a stored record (LocalProtocolError if damaged), with the ML-KEM keys this
        cache already holds: for a record that is not the live state of its session."""
        return SessionState.from_bytes(record, expanded=self._kem_keys)

    def remember(self, address: str, device: int, record: bytes, state: SessionState) -> None:
        """``state`` is now stored as ``record``; evicts the least recently used session."""
        key = (address, device)
        previous = self._entries.get(key)
        self._entries[key] = (record, state)
        self._entries.move_to_end(key)
        for seed, pair in _kem_keys(state):
            if seed is not None and pair is not None:
                self._kem_keys.put(seed, pair)
        if previous is not None and _kem_seeds_changed(previous[1], state):
            self._drop_keys(previous[1], state)
        while len(self._entries) > self._size:
            self._drop_keys(self._entries.popitem(last=False)[1][1], None)

    def forget(self, address: str, device: int) -> None:
        entry = self._entries.pop((address, device), None)
        if entry is not None:
            self._drop_keys(entry[1], None)

    def _drop_keys(self, old: SessionState, new: SessionState | None) -> None:
        """Forget the ML-KEM keys ``old`` held that ``new`` (its successor, if any) no longer
        holds: a turn superseded them, or the session left the cache."""
        kept = [seed for seed, _ in _kem_keys(new)] if new is not None else []
        for seed, _ in _kem_keys(old):
            if seed is not None and seed not in kept:
                self._kem_keys.forget(seed)
