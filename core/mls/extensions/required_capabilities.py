"""The required_capabilities extension (RFC 9420 §11.1): what every member of a group must
support; ``missing_in`` says what a member's Capabilities lacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from ..codec import Encodable, Reader, Writer
from .capabilities import Capabilities, read_capability_list

__all__ = ["RequiredCapabilities", "DEFAULT_PROPOSAL_TYPES"]

#: proposal types 1-7 of RFC 9420 (§7.2: supported by every client, never listed)
DEFAULT_PROPOSAL_TYPES = frozenset(range(1, 8))


@dataclass(frozen=True, slots=True)
class RequiredCapabilities(Encodable):
    extension_types: tuple[int, ...] = ()
    proposal_types: tuple[int, ...] = ()
    credential_types: tuple[int, ...] = ()

    def write(self, w: Writer) -> None:
        w.vector(self.extension_types, Writer.u16)
        w.vector(self.proposal_types, Writer.u16)
        w.vector(self.credential_types, Writer.u16)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(read_capability_list(r), read_capability_list(r), read_capability_list(r))

    def missing_in(self, capabilities: Capabilities) -> str | None:
        """A one-line description of the first requirement ``capabilities`` does not meet, else None."""
        for t in self.extension_types:
            if not capabilities.supports_extension(t):
                return f"extension type {t}"
        for t in self.proposal_types:
            if t not in DEFAULT_PROPOSAL_TYPES and t not in capabilities.proposals:
                return f"proposal type {t}"
        for t in self.credential_types:
            if t not in capabilities.credentials:
                return f"credential type {t}"
        return None
