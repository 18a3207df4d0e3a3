"""The three crypto modes and the node policy ``minimum_crypto_mode``.

Modes are ordered by the strength a node can demand: ``classical`` < ``hybrid`` < ``pq``.
``hybrid`` (the default) needs an attacker to break both the classical and the post-quantum
component; ``pq`` drops the classical half for deployments that must avoid it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from ..errors import LocalProtocolError, RemoteProtocolError

__all__ = ["CryptoMode", "CryptoPolicy", "Rng", "DEFAULT_MODE"]

#: Randomness is a parameter of pure code: a function returning n random bytes.
Rng = Callable[[int], bytes]


class CryptoMode(enum.Enum):
    CLASSICAL = "classical"
    HYBRID = "hybrid"
    PQ = "pq"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def uses_classical(self) -> bool:
        return self is not CryptoMode.PQ

    @property
    def uses_pq(self) -> bool:
        return self is not CryptoMode.CLASSICAL

    @classmethod
    def parse(cls, name: object, *, remote: bool = True) -> "CryptoMode":
        try:
            return cls(name)
        except ValueError:
            err = RemoteProtocolError if remote else LocalProtocolError
            raise err(f"unknown crypto mode {name!r} (expected classical, hybrid or pq)") from None


_RANK = {CryptoMode.CLASSICAL: 0, CryptoMode.HYBRID: 1, CryptoMode.PQ: 2}
DEFAULT_MODE = CryptoMode.HYBRID


class CryptoPolicy:
    """Which modes a party accepts and which it prefers when it proposes."""

    __slots__ = ("minimum", "preferred")

    def __init__(self, minimum: CryptoMode = DEFAULT_MODE, preferred: CryptoMode | None = None) -> None:
        preferred = preferred or max(minimum, DEFAULT_MODE, key=lambda m: m.rank)
        if preferred.rank < minimum.rank:
            raise LocalProtocolError("preferred crypto mode is below the minimum")
        self.minimum = minimum
        self.preferred = preferred

    def accepts(self, mode: CryptoMode) -> bool:
        return mode.rank >= self.minimum.rank

    def require(self, mode: CryptoMode, what: str) -> None:
        if not self.accepts(mode):
            raise RemoteProtocolError(
                f"{what} uses crypto mode {mode.value}, below the minimum {self.minimum.value}",
                code="crypto_mode_refused",
            )

    def offer(self) -> list[CryptoMode]:
        """Modes to offer, most preferred first: the preferred mode, then the rest accepted."""
        rest = sorted((m for m in CryptoMode if self.accepts(m) and m is not self.preferred), key=lambda m: -m.rank)
        return [self.preferred, *rest]
