"""The psk_secret of RFC 9420 §8.4: every PSK a commit injects, chained into one secret.

    psk_extracted[i] = KDF.Extract(0, psk[i])
    psk_input[i]     = ExpandWithLabel(psk_extracted[i], "derived psk", PSKLabel(id[i], i, n), KDF.Nh)
    psk_secret[0]    = 0;  psk_secret[i+1] = KDF.Extract(psk_input[i], psk_secret[i])

No PSK gives the all-zero secret of KDF.Nh bytes, which the key schedule then uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...errors import RemoteProtocolError
from .psk_id import PreSharedKeyID, PSKLabel

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["psk_secret", "MAX_PSKS"]

#: PSKLabel counts in a uint16
MAX_PSKS = 0xFFFF


def psk_secret(cs: CipherSuite, psks: Sequence[tuple[PreSharedKeyID, bytes]]) -> bytes:
    """The chained secret of ``psks`` (id, psk value), in proposal order. Refuses a nonce that is
    not KDF.Nh bytes long and the same PSK id twice (RFC 9420 §8.4, §12.2)."""
    count = len(psks)
    if count > MAX_PSKS:
        raise RemoteProtocolError(f"MLS: {count} pre-shared keys, at most {MAX_PSKS}")
    seen: set[PreSharedKeyID] = set()
    secret = bytes(cs.nh)
    for index, (psk_id, psk) in enumerate(psks):
        if len(psk_id.psk_nonce) != cs.nh:
            raise RemoteProtocolError(f"MLS: PSK nonce of {len(psk_id.psk_nonce)} bytes, the suite needs {cs.nh}")
        if psk_id in seen:
            raise RemoteProtocolError(f"MLS: the same pre-shared key twice ({psk_id!r})")
        seen.add(psk_id)
        extracted = cs.extract(bytes(cs.nh), psk)
        label = PSKLabel(psk_id, index, count).to_bytes()
        psk_input = cs.expand_with_label(extracted, b"derived psk", label, cs.nh)
        secret = cs.extract(psk_input, secret)
    return secret
