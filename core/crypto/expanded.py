"""Private keys kept expanded: a bounded cache from a key's seed bytes to its built key object.

Building an ML-KEM-768 key from its 64-byte seed (FIPS 203 key generation) costs about as much
as generating a new one, and an X-Wing key adds SHAKE256 and an X25519 scalar multiplication.
Code that meets the same seed again while the key is in use (a session record decoded again,
an earlier session tried once more, the device's sealed-sender key read with its profile)
takes the object built last time instead.

The cache holds secrets. It is bounded (the least recently used key goes first), its repr
shows only how many keys it holds, and :meth:`forget` lets an owner drop a key the moment it
discards it (a ratchet key superseded by a turn), so that a key deleted from its record does
not stay here. Only ``bytes`` seeds are cached; anything else is built and not kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ExpandedKeys"]

K = TypeVar("K")


class ExpandedKeys(Generic[K]):
    """Up to ``size`` key objects built by ``build(seed)``, by seed, least recently used out."""

    __slots__ = ("_build", "_size", "_keys")

    def __init__(self, build: Callable[[bytes], K], size: int) -> None:
        if size < 1:
            raise ValueError("a key cache holds at least one key")
        self._build = build
        self._size = size
        self._keys: OrderedDict[bytes, K] = OrderedDict()

    def get(self, seed: bytes) -> K:
        """The key of ``seed``: the one built before, or built now (``build``'s errors pass
        through, and nothing is kept then)."""
        if type(seed) is not bytes:
            return self._build(seed)
        key = self._keys.get(seed)
        if key is None:
            key = self._build(seed)
            self.put(seed, key)
        else:
            self._keys.move_to_end(seed)
        return key

    def put(self, seed: bytes, key: K) -> None:
        """Keep ``key``, already built from ``seed`` (a freshly generated key still in use)."""
        if type(seed) is not bytes:
            return
        self._keys[seed] = key
        self._keys.move_to_end(seed)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)

    def forget(self, seed: bytes | None) -> None:
        """Drop the key of ``seed`` (no-op if it is not here)."""
        if type(seed) is bytes:
            self._keys.pop(seed, None)

    def __contains__(self, seed: object) -> bool:
        return type(seed) is bytes and seed in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"ExpandedKeys({len(self._keys)} keys)"
