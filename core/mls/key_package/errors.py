"""The error of MLS structures that decode but break a rule of RFC 9420."""

from __future__ import annotations

from ...errors import RemoteProtocolError

__all__ = ["ValidationError"]


class ValidationError(RemoteProtocolError):
    """A well-formed MLS structure that is not valid: a bad signature, parent or tree hash, a
    capability or leaf-node rule broken. One line saying which rule."""

    code = "mls_invalid"

    def __init__(self, message: str) -> None:
        super().__init__(f"MLS: {message}")
