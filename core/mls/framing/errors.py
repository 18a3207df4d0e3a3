"""The refusals of framing that are not malformed encodings (those are codec ``DecodeError``s)."""

from __future__ import annotations

from ...errors import RemoteProtocolError

__all__ = ["WrongEpochError"]


class WrongEpochError(RemoteProtocolError):
    """A message of another group, or of another epoch than the one it is processed in."""

    code = "mls_invalid"

    def __init__(self, message: str) -> None:
        super().__init__(f"MLS: {message}")
