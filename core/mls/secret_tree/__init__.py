"""The secret tree of RFC 9420 §9: per-sender handshake and application hash ratchets derived
lazily from the epoch's encryption_secret, with a bounded window for out-of-order messages and
the deletion schedule of §9.2 (a used key cannot be had again)."""

from .ratchet import MAX_GENERATION, GenerationError, RatchetKey, RatchetKind, SenderRatchet
from .secret_tree import MAX_LEAVES, SecretTree

__all__ = ["GenerationError", "MAX_GENERATION", "MAX_LEAVES", "RatchetKey", "RatchetKind", "SecretTree", "SenderRatchet"]
