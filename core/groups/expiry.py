"""Timed group items: an application message's expiry, as its sender authenticates it
(docs/groups.md "Disappearing messages on nodes").

A device that writes a message while the group's timer is on puts the message's expiry (ms)
into the MLS PrivateMessage's ``authenticated_data``: in the clear, so the hub and every node
read it without any secret, yet bound to the ciphertext by the AEAD and covered by the sender's
signature, so every member device that decrypts the message checks it is the sender's. An
untimed message carries empty authenticated data; anything else is malformed. Commits and
proposals never expire (the hub refuses them with one: ``timed_change``).
"""

from __future__ import annotations

from .. import canonical
from ..errors import RemoteProtocolError

__all__ = ["expiry_aad", "read_expiry_aad", "MAX_EXPIRY_AAD_BYTES"]

_FORMAT = 1
_FIELDS: dict[str, type] = {"v": int, "expires": int}
#: more than a timed message's authenticated data takes
MAX_EXPIRY_AAD_BYTES = 64


def expiry_aad(expires: int | None) -> bytes:
    """The authenticated data of a message expiring at ``expires`` (ms; None: it does not)."""
    if expires is None:
        return b""
    if not 0 < expires < 2**63:
        raise ValueError("an expiry is a positive time in ms")
    return canonical.dumps({"v": _FORMAT, "expires": expires})


def read_expiry_aad(aad: bytes) -> int | None:
    """The expiry ``expiry_aad`` wrote into ``aad`` (None: the message does not expire);
    ValueError (one line) for anything it did not write."""
    if not aad:
        return None
    try:
        fields = canonical.loads_map(aad, _FIELDS, max_bytes=MAX_EXPIRY_AAD_BYTES)
    except RemoteProtocolError as exc:
        raise ValueError(f"a group message's authenticated data is not an expiry: {exc}") from None
    if fields["v"] != _FORMAT or not 0 < fields["expires"] < 2**63 or canonical.dumps(fields) != aad:
        raise ValueError("a group message's authenticated data is not an expiry in its canonical form")
    return int(fields["expires"])
