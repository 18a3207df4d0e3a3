"""The one error of MLS decoding."""

from __future__ import annotations

from ...errors import RemoteProtocolError

__all__ = ["DecodeError"]


class DecodeError(RemoteProtocolError):
    """Bytes that are not a valid encoding of the expected MLS structure (truncated, trailing
    bytes, a non-minimal length, an out-of-range value, over a cap of core/limits.py)."""

    code = "mls_malformed"

    def __init__(self, message: str) -> None:
        super().__init__(f"MLS: {message}")
