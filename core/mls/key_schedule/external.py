"""The epoch's external init key pair (RFC 9420 §8.3): the HPKE key pair derived from the
external_secret, whose public key the GroupInfo's external_pub extension publishes so that a
non-member can join by external commit."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["external_key_pair"]


def external_key_pair(cs: CipherSuite, external_secret: bytes) -> tuple[bytes, bytes]:
    """(private key, public key) = KEM.DeriveKeyPair(external_secret) of the suite's KEM."""
    return cs.derive_key_pair(external_secret)
