"""One-time registration tokens: ``<node fingerprint>.<secret>``.

The fingerprint lets a new device authenticate the node on its very first connection (no
trust-on-first-use); the node stores only a hash of the secret.
"""

from __future__ import annotations

import base64

from .crypto import normalize_fingerprint, sha256
from .errors import LocalProtocolError

__all__ = ["make_invite", "parse_invite", "hash_invite_secret", "SECRET_BYTES"]

SECRET_BYTES = 20
#: the secret is base32 (lower case, no padding) of SECRET_BYTES bytes
_SECRET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def make_invite(fingerprint: str, secret: bytes) -> str:
    return f"{fingerprint}.{base64.b32encode(secret).decode().lower()}"


_MALFORMED = "malformed invite token (expected FINGERPRINT.SECRET as printed by `sonet-node invite`)"


def parse_invite(token: str) -> tuple[str, str]:
    """Return (node fingerprint, secret text) or raise LocalProtocolError ``invite_invalid``:
    a mistyped token is the user's mistake, the code the node gives a wrong one, not a bug."""
    parts = token.strip().split(".")
    # The secret is checked as it will be sent: a typo is refused here, not by the node.
    secret = parts[1].lower() if len(parts) == 2 else ""
    if len(secret) != 32 or not set(secret) <= _SECRET_CHARS:
        raise LocalProtocolError(_MALFORMED, code="invite_invalid")
    try:
        return normalize_fingerprint(parts[0]), secret
    except LocalProtocolError as exc:
        raise LocalProtocolError(f"{_MALFORMED}: {exc}", code="invite_invalid") from None


def hash_invite_secret(secret: str) -> bytes:
    return sha256(b"sonet-invite-v1", secret.encode())
