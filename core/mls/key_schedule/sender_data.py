"""The keys of a PrivateMessage's sender data (RFC 9420 §6.3.2), derived from the epoch's
sender_data_secret and a sample of the message's ciphertext (framing encrypts with them).

    ciphertext_sample = ciphertext[0..KDF.Nh-1]   (the whole ciphertext if shorter)
    sender_data_key   = ExpandWithLabel(sender_data_secret, "key", ciphertext_sample, AEAD.Nk)
    sender_data_nonce = ExpandWithLabel(sender_data_secret, "nonce", ciphertext_sample, AEAD.Nn)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["sender_data_key_nonce"]


def sender_data_key_nonce(cs: CipherSuite, sender_data_secret: bytes, ciphertext: bytes) -> tuple[bytes, bytes]:
    """(key, nonce) that protect the sender data of the PrivateMessage whose content
    ciphertext is ``ciphertext``."""
    sample = ciphertext[: cs.nh]
    return (
        cs.expand_with_label(sender_data_secret, b"key", sample, cs.nk),
        cs.expand_with_label(sender_data_secret, b"nonce", sample, cs.nn),
    )
