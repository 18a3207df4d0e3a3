"""The key and nonce that encrypt a Welcome's GroupInfo (RFC 9420 §12.4.3.1), from the
epoch's welcome_secret."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["welcome_key_nonce"]


def welcome_key_nonce(cs: CipherSuite, welcome_secret: bytes) -> tuple[bytes, bytes]:
    """(welcome_key, welcome_nonce) = ExpandWithLabel(welcome_secret, "key"/"nonce", "", Nk/Nn)."""
    return (
        cs.expand_with_label(welcome_secret, b"key", b"", cs.nk),
        cs.expand_with_label(welcome_secret, b"nonce", b"", cs.nn),
    )
