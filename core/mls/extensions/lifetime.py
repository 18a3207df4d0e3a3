"""Lifetime (RFC 9420 §7.2): the validity window of a KeyPackage's leaf, in seconds since the
epoch. Core has no clock: the caller passes ``now``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from ..codec import Encodable, Reader, Writer

__all__ = ["Lifetime"]


@dataclass(frozen=True, slots=True)
class Lifetime(Encodable):
    not_before: int
    not_after: int

    def write(self, w: Writer) -> None:
        w.u64(self.not_before)
        w.u64(self.not_after)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.u64(), r.u64())

    def contains(self, now: int) -> bool:
        return self.not_before <= now <= self.not_after
