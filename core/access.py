"""Access tokens: what lets a contact fill a mailbox at the normal rate (message requests).

In the spirit of Signal's unidentified-access keys. An account's node issues the account's
devices a token bound to the account and a 30-day epoch::

    token = epoch (4 bytes, big-endian) || HMAC-SHA256(secret, "sonet-access-v1" || epoch || account)[:16]

``secret`` is derived from the node's identity key (:func:`access_secret`), so the node keeps no
table of tokens and every device of an account gets the same one without syncing anything.
A device puts its account's token inside the sealed box of each message its user writes
(core/sealed_sender.py): the people the user writes to learn it end-to-end encrypted and present
it with their envelopes to the account (``SendBatch.access``; between nodes ``Transit.access``).
Only the account's own node can check it (in constant time). The token names the recipient,
never the sender: the node learns that a sender is one of the account's contacts, not which.

A valid token is accepted in its epoch and the next one, so a contact stays a contact for 30 to
60 days after the account last wrote to it; after that its envelopes count as message requests
again until the account writes again. All of a node's tokens change if its identity key does.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["ACCESS_TOKEN_LEN", "ACCESS_EPOCH_MS", "access_secret", "issue_access_token", "access_token_valid"]

ACCESS_TOKEN_LEN = 20
ACCESS_EPOCH_MS = 30 * 24 * 3600 * 1000
_MAC_LEN = 16
_SECRET_LABEL = b"sonet-access-secret-v1"
_TOKEN_LABEL = b"sonet-access-v1"


def access_secret(node_private_key: bytes) -> bytes:
    """The key the node MACs its accounts' tokens with, from its identity key's private bytes
    (a one-way derivation: the secret reveals nothing of the identity key)."""
    return hmac.new(node_private_key, _SECRET_LABEL, hashlib.sha256).digest()


def _mac(secret: bytes, account: str, epoch: int) -> bytes:
    data = _TOKEN_LABEL + epoch.to_bytes(4, "big") + account.encode()
    return hmac.new(secret, data, hashlib.sha256).digest()[:_MAC_LEN]


def _epoch(now_ms: int) -> int:
    return max(0, now_ms) // ACCESS_EPOCH_MS


def issue_access_token(secret: bytes, account: str, *, now_ms: int) -> bytes:
    """The token of ``account`` (a normalised address) for the epoch of ``now_ms``."""
    epoch = _epoch(now_ms)
    return epoch.to_bytes(4, "big") + _mac(secret, account, epoch)


def access_token_valid(secret: bytes, account: str, token: bytes, *, now_ms: int) -> bool:
    """True if ``token`` is ``account``'s token of this epoch or the one before. A token of
    another account, another node, a later epoch or any altered byte is False."""
    if type(token) is not bytes or len(token) != ACCESS_TOKEN_LEN:
        return False
    epoch = int.from_bytes(token[:4], "big")
    current = _epoch(now_ms)
    if epoch not in (current, current - 1):
        return False
    return hmac.compare_digest(token[4:], _mac(secret, account, epoch))
