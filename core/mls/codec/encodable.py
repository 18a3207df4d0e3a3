"""The base of every MLS structure: ``write``/``read`` against the codec, and whole-buffer
``to_bytes``/``from_bytes`` built on them (trailing bytes refused)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

from .reader import Reader, decode_all
from .writer import Writer

__all__ = ["Encodable"]


class Encodable(ABC):
    """Subclass with ``@dataclass(frozen=True, slots=True)`` and implement ``write`` and ``read``."""

    __slots__ = ()

    @abstractmethod
    def write(self, w: Writer) -> None: ...

    @classmethod
    @abstractmethod
    def read(cls, r: Reader) -> Self: ...

    def to_bytes(self) -> bytes:
        w = Writer()
        self.write(w)
        return w.bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return decode_all(data, cls.read)
