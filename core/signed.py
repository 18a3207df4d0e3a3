"""Signed objects: canonical CBOR ``{"body": <canonical CBOR bytes>, "sig": <signature>}``.

Device records, device lists and sender certificates all take this shape, so a signature
always covers exactly the body bytes that travel. Verifying the signature and the body's
fields is each caller's business; this module only builds and splits the envelope.
"""

from __future__ import annotations

from typing import Any

from . import canonical
from .crypto import SigningKey

__all__ = ["sign_body", "split_signed"]


def sign_body(key: SigningKey, label: bytes, fields: dict[str, Any]) -> bytes:
    body = canonical.dumps(fields)
    return canonical.dumps({"body": body, "sig": key.sign(label, body)})


def split_signed(raw: bytes, *, max_bytes: int) -> tuple[bytes, bytes]:
    """(body bytes, signature), structure only: nothing is verified here."""
    outer = canonical.loads_map(raw, {"body": bytes, "sig": bytes}, max_bytes=max_bytes)
    return outer["body"], outer["sig"]
