"""Sender (RFC 9420 §6): who sent a framed message — a member by leaf index, an external sender by
its index in the group's external_senders extension, or a new member (by proposal or commit)."""

from __future__ import annotations

from dataclasses import dataclass

from ..codec import Reader, Writer
from .enums import SenderType

__all__ = ["Sender"]


@dataclass(frozen=True, slots=True)
class Sender:
    sender_type: SenderType
    #: leaf_index for a member, sender_index for an external sender, 0 (absent) for new members
    index: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.index < 2**32:
            raise ValueError(f"sender index {self.index} is not a uint32")
        if not self.has_index and self.index != 0:
            raise ValueError(f"a {self.sender_type.name.lower()} sender carries no index")

    @classmethod
    def member(cls, leaf_index: int) -> Sender:
        return cls(SenderType.MEMBER, leaf_index)

    @classmethod
    def external(cls, sender_index: int) -> Sender:
        return cls(SenderType.EXTERNAL, sender_index)

    @classmethod
    def new_member_proposal(cls) -> Sender:
        return cls(SenderType.NEW_MEMBER_PROPOSAL)

    @classmethod
    def new_member_commit(cls) -> Sender:
        return cls(SenderType.NEW_MEMBER_COMMIT)

    @property
    def has_index(self) -> bool:
        return self.sender_type in (SenderType.MEMBER, SenderType.EXTERNAL)

    @property
    def is_member(self) -> bool:
        return self.sender_type is SenderType.MEMBER

    def write(self, w: Writer) -> None:
        self.sender_type.write(w)
        if self.has_index:
            w.u32(self.index)

    @classmethod
    def read(cls, r: Reader) -> Sender:
        sender_type = SenderType.read(r)
        if sender_type in (SenderType.MEMBER, SenderType.EXTERNAL):
            return cls(sender_type, r.u32())
        return cls(sender_type)
