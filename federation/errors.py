"""The one error of the federation service's remote methods (see federation/service.py)."""

from __future__ import annotations

__all__ = ["FederationError"]


class FederationError(Exception):
    """A remote lookup or route failed; ``code`` is machine-readable, the message one line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
