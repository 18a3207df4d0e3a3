"""One sender's hash ratchet of RFC 9420 §9.1 (handshake or application), with the bounded
window for out-of-order messages and the deletion schedule of §9.2.

    key[j]      = DeriveTreeSecret(secret[j], "key", j, AEAD.Nk)
    nonce[j]    = DeriveTreeSecret(secret[j], "nonce", j, AEAD.Nn)
    secret[j+1] = DeriveTreeSecret(secret[j], "secret", j, KDF.Nh)

The ratchet holds only the secret of its next generation and the unused keys of skipped
generations no more than ``window`` behind it. A key leaves the ratchet when it is used; a
message of a generation already used, older than the window or more than ``max_skipped``
ahead is refused (``mls_generation``) before any derivation.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ...errors import LocalProtocolError, RemoteProtocolError
from ...limits import MLS_MAX_SKIPPED_GENERATIONS, MLS_OUT_OF_ORDER_WINDOW

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["RatchetKind", "RatchetKey", "SenderRatchet", "GenerationError", "MAX_GENERATION"]

T = TypeVar("T")

#: generations are uint32 on the wire (PrivateMessage's sender data)
MAX_GENERATION = 0xFFFFFFFF


class RatchetKind(enum.Enum):
    """Which of a sender's two ratchets: handshake (proposals, commits) or application."""

    HANDSHAKE = b"handshake"
    APPLICATION = b"application"


class GenerationError(RemoteProtocolError):
    """A message generation the ratchet will not give a key for."""

    code = "mls_generation"


@dataclass(frozen=True, slots=True, repr=False)
class RatchetKey:
    """The AEAD key and nonce of one generation (framing XORs the reuse_guard into the nonce)."""

    generation: int
    key: bytes
    nonce: bytes

    def __repr__(self) -> str:  # never show key material
        return f"RatchetKey(generation={self.generation}, <secret>)"


class SenderRatchet:
    __slots__ = ("_cs", "_secret", "_next", "_skipped", "_window", "_max_skipped")

    def __init__(
        self,
        cs: CipherSuite,
        secret: bytes,
        *,
        window: int = MLS_OUT_OF_ORDER_WINDOW,
        max_skipped: int = MLS_MAX_SKIPPED_GENERATIONS,
    ) -> None:
        if window < 0 or max_skipped < 0:
            raise LocalProtocolError("MLS: a negative out-of-order window or skip limit")
        self._cs = cs
        self._secret: bytes | None = secret  # the secret of generation self._next (None: exhausted)
        self._next = 0
        self._skipped: dict[int, RatchetKey] = {}  # unused keys of generations below self._next
        self._window = window
        self._max_skipped = max_skipped

    @property
    def next_generation(self) -> int:
        """The generation the next key for sending has (every lower one is used or skipped)."""
        return self._next

    @property
    def skipped_generations(self) -> tuple[int, ...]:
        """The generations behind ``next_generation`` whose keys are still kept, ascending."""
        return tuple(sorted(self._skipped))

    def _step(self, secret: bytes, generation: int) -> tuple[RatchetKey, bytes | None]:
        """The key of ``generation`` from its secret, and the secret of the next generation."""
        cs = self._cs
        key = RatchetKey(
            generation,
            cs.derive_tree_secret(secret, b"key", generation, cs.nk),
            cs.derive_tree_secret(secret, b"nonce", generation, cs.nn),
        )
        if generation == MAX_GENERATION:
            return key, None
        return key, cs.derive_tree_secret(secret, b"secret", generation, cs.nh)

    def next_key(self) -> RatchetKey:
        """The key of the next generation, for sending; the ratchet moves past it."""
        if self._secret is None:
            raise LocalProtocolError("MLS: this sender's ratchet is exhausted (2^32 generations); a new epoch is needed")
        key, self._secret = self._step(self._secret, self._next)
        self._next += 1
        return key

    def open_with(self, generation: int, use: Callable[[RatchetKey], T]) -> T:
        """``use(key)`` with the key of a received message's ``generation``. The key (and every
        secret it came from) is deleted only if ``use`` returns: a forged or damaged message
        whose decryption raises neither uses up a key nor moves the ratchet."""
        if not 0 <= generation <= MAX_GENERATION:
            raise GenerationError(f"MLS: generation {generation} is not a uint32")
        if generation < self._next:
            return self._open_past(generation, use)
        distance = generation - self._next
        if distance > self._max_skipped:
            raise GenerationError(
                f"MLS: generation {generation} is {distance} past the next expected ({self._next}); "
                f"at most {self._max_skipped} may be skipped"
            )
        if self._secret is None:
            raise GenerationError("MLS: this sender's ratchet is exhausted (2^32 generations)")
        # derive forward on the side; commit only after ``use`` succeeded
        secret: bytes | None = self._secret
        skipped: list[RatchetKey] = []
        keep_from = generation + 1 - self._window
        for j in range(self._next, generation):
            assert secret is not None  # only the last generation has no successor
            key, secret = self._step(secret, j)
            if j >= keep_from:
                skipped.append(key)
        assert secret is not None
        key, secret = self._step(secret, generation)
        result = use(key)
        self._secret = secret
        self._next = generation + 1
        self._skipped = {g: k for g, k in self._skipped.items() if g >= keep_from}
        self._skipped.update((k.generation, k) for k in skipped)
        return result

    def _open_past(self, generation: int, use: Callable[[RatchetKey], T]) -> T:
        key = self._skipped.get(generation)
        if key is None:
            if generation < self._next - self._window:
                raise GenerationError(
                    f"MLS: generation {generation} is older than the out-of-order window "
                    f"({self._window} behind {self._next - 1}); its key is deleted"
                )
            raise GenerationError(f"MLS: generation {generation} was used already (a replay?)")
        result = use(key)
        del self._skipped[generation]
        return result
