"""PreSharedKeyID and PSKLabel of RFC 9420 §8.4: which pre-shared key a commit injects."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from ..codec import DecodeError, Encodable, Reader, Writer

__all__ = ["PSKType", "ResumptionPSKUsage", "PreSharedKeyID", "PSKLabel"]


class PSKType(IntEnum):
    EXTERNAL = 1
    RESUMPTION = 2


class ResumptionPSKUsage(IntEnum):
    APPLICATION = 1
    REINIT = 2
    BRANCH = 3


@dataclass(frozen=True, slots=True)
class PreSharedKeyID(Encodable):
    """An external PSK (``psk_id`` set) or a resumption PSK (``usage``, ``psk_group_id`` and
    ``psk_epoch`` set); ``psk_nonce`` is the proposer's fresh KDF.Nh-byte nonce."""

    psktype: PSKType
    psk_nonce: bytes
    psk_id: bytes = b""
    usage: ResumptionPSKUsage = ResumptionPSKUsage.APPLICATION
    psk_group_id: bytes = b""
    psk_epoch: int = 0

    @classmethod
    def external(cls, psk_id: bytes, psk_nonce: bytes) -> Self:
        return cls(PSKType.EXTERNAL, psk_nonce, psk_id=psk_id)

    @classmethod
    def resumption(cls, usage: ResumptionPSKUsage, psk_group_id: bytes, psk_epoch: int, psk_nonce: bytes) -> Self:
        return cls(PSKType.RESUMPTION, psk_nonce, usage=usage, psk_group_id=psk_group_id, psk_epoch=psk_epoch)

    def write(self, w: Writer) -> None:
        w.u8(self.psktype)
        if self.psktype == PSKType.EXTERNAL:
            w.opaque(self.psk_id)
        else:
            w.u8(self.usage)
            w.opaque(self.psk_group_id)
            w.u64(self.psk_epoch)
        w.opaque(self.psk_nonce)

    @classmethod
    def read(cls, r: Reader) -> Self:
        kind = r.u8()
        if kind == PSKType.EXTERNAL:
            psk_id = r.opaque()
            return cls.external(psk_id, r.opaque())
        if kind == PSKType.RESUMPTION:
            usage = r.u8()
            if usage not in ResumptionPSKUsage._value2member_map_:
                raise DecodeError(f"unknown resumption PSK usage {usage}")
            group_id = r.opaque()
            epoch = r.u64()
            return cls.resumption(ResumptionPSKUsage(usage), group_id, epoch, r.opaque())
        raise DecodeError(f"unknown PSK type {kind}")

    def __repr__(self) -> str:
        if self.psktype == PSKType.EXTERNAL:
            return f"PreSharedKeyID(external, psk_id={self.psk_id.hex()})"
        return f"PreSharedKeyID(resumption, {self.usage.name.lower()}, group={self.psk_group_id.hex()}, epoch={self.psk_epoch})"


@dataclass(frozen=True, slots=True)
class PSKLabel(Encodable):
    """The context of one PSK's ``derived psk`` expansion: its id and its place in the list."""

    id: PreSharedKeyID
    index: int
    count: int

    def write(self, w: Writer) -> None:
        self.id.write(w)
        w.u16(self.index)
        w.u16(self.count)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(PreSharedKeyID.read(r), r.u16(), r.u16())
