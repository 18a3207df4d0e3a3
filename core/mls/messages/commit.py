"""Commit (RFC 9420 §12.4): the proposals it applies, by value or by reference, and an optional
UpdatePath."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from ..codec import Encodable, Reader, Writer
from .proposal import ProposalOrRef, read_proposal_or_ref, write_proposal_or_ref
from .update_path import UpdatePath

__all__ = ["Commit"]


@dataclass(frozen=True, slots=True)
class Commit(Encodable):
    proposals: tuple[ProposalOrRef, ...] = ()
    path: UpdatePath | None = None

    def write(self, w: Writer) -> None:
        w.vector(self.proposals, write_proposal_or_ref)
        w.optional(self.path, lambda w2, p: p.write(w2))

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(tuple(r.vector(read_proposal_or_ref)), r.optional(UpdatePath.read))
