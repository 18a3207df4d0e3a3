"""Proposals (RFC 9420 §12.1): Add, Update, Remove, PreSharedKey, ReInit, ExternalInit,
GroupContextExtensions, and a proposal of a type this code does not know (the registry is open:
its content is kept as ``opaque<V>`` and round-trips). Each class encodes its own type tag;
``read_proposal`` reads any of them. ``ProposalRef``/``read_proposal_or_ref`` are the
by-reference form a Commit may use (§12.4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Self

from ..codec import DecodeError, Encodable, Reader, Writer
from ..extensions.extension import Extension, read_extensions, write_extensions
from ..key_package.key_package import KeyPackage
from ..key_package.leaf_node import LeafNode
from ..psk.psk_id import PreSharedKeyID

__all__ = [
    "ProposalType",
    "Add",
    "Update",
    "Remove",
    "PreSharedKey",
    "ReInit",
    "ExternalInit",
    "GroupContextExtensions",
    "UnknownProposal",
    "Proposal",
    "ProposalRef",
    "ProposalOrRef",
    "read_proposal",
    "read_proposal_or_ref",
    "write_proposal_or_ref",
]


class ProposalType(IntEnum):
    ADD = 1
    UPDATE = 2
    REMOVE = 3
    PSK = 4
    REINIT = 5
    EXTERNAL_INIT = 6
    GROUP_CONTEXT_EXTENSIONS = 7


class _Tagged(Encodable):
    """A proposal: its uint16 type, then its body."""

    __slots__ = ()

    @property
    def proposal_type(self) -> int:
        raise NotImplementedError

    def write(self, w: Writer) -> None:
        w.u16(self.proposal_type)
        self.write_body(w)

    def write_body(self, w: Writer) -> None:
        raise NotImplementedError

    @classmethod
    def read(cls, r: Reader) -> Self:
        proposal = read_proposal(r)
        if not isinstance(proposal, cls):
            raise DecodeError(f"proposal of type {proposal.proposal_type} where {cls.__name__} was expected")
        return proposal


@dataclass(frozen=True, slots=True)
class Add(_Tagged):
    key_package: KeyPackage

    @property
    def proposal_type(self) -> int:
        return ProposalType.ADD

    def write_body(self, w: Writer) -> None:
        self.key_package.write(w)


@dataclass(frozen=True, slots=True)
class Update(_Tagged):
    leaf_node: LeafNode

    @property
    def proposal_type(self) -> int:
        return ProposalType.UPDATE

    def write_body(self, w: Writer) -> None:
        self.leaf_node.write(w)


@dataclass(frozen=True, slots=True)
class Remove(_Tagged):
    removed: int  # leaf index

    @property
    def proposal_type(self) -> int:
        return ProposalType.REMOVE

    def write_body(self, w: Writer) -> None:
        w.u32(self.removed)


@dataclass(frozen=True, slots=True)
class PreSharedKey(_Tagged):
    psk: PreSharedKeyID

    @property
    def proposal_type(self) -> int:
        return ProposalType.PSK

    def write_body(self, w: Writer) -> None:
        self.psk.write(w)


@dataclass(frozen=True, slots=True)
class ReInit(_Tagged):
    group_id: bytes
    version: int
    cipher_suite: int
    extensions: tuple[Extension, ...] = ()

    @property
    def proposal_type(self) -> int:
        return ProposalType.REINIT

    def write_body(self, w: Writer) -> None:
        w.opaque(self.group_id)
        w.u16(self.version)
        w.u16(self.cipher_suite)
        write_extensions(w, self.extensions)


@dataclass(frozen=True, slots=True)
class ExternalInit(_Tagged):
    kem_output: bytes

    @property
    def proposal_type(self) -> int:
        return ProposalType.EXTERNAL_INIT

    def write_body(self, w: Writer) -> None:
        w.opaque(self.kem_output)


@dataclass(frozen=True, slots=True)
class GroupContextExtensions(_Tagged):
    extensions: tuple[Extension, ...]

    @property
    def proposal_type(self) -> int:
        return ProposalType.GROUP_CONTEXT_EXTENSIONS

    def write_body(self, w: Writer) -> None:
        write_extensions(w, self.extensions)


@dataclass(frozen=True, slots=True)
class UnknownProposal(_Tagged):
    """A proposal of a type outside 1-7, its content kept as opaque bytes."""

    type_value: int
    data: bytes

    @property
    def proposal_type(self) -> int:
        return self.type_value

    def write_body(self, w: Writer) -> None:
        w.opaque(self.data)


Proposal = Add | Update | Remove | PreSharedKey | ReInit | ExternalInit | GroupContextExtensions | UnknownProposal

_BODY_READERS: dict[int, Callable[[Reader], Proposal]] = {
    ProposalType.ADD: lambda r: Add(KeyPackage.read(r)),
    ProposalType.UPDATE: lambda r: Update(LeafNode.read(r)),
    ProposalType.REMOVE: lambda r: Remove(r.u32()),
    ProposalType.PSK: lambda r: PreSharedKey(PreSharedKeyID.read(r)),
    ProposalType.REINIT: lambda r: ReInit(r.opaque(), r.u16(), r.u16(), read_extensions(r)),
    ProposalType.EXTERNAL_INIT: lambda r: ExternalInit(r.opaque()),
    ProposalType.GROUP_CONTEXT_EXTENSIONS: lambda r: GroupContextExtensions(read_extensions(r)),
}


def read_proposal(r: Reader) -> Proposal:
    proposal_type = r.u16()
    if proposal_type == 0:
        raise DecodeError("proposal type 0 is reserved")
    body = _BODY_READERS.get(proposal_type)
    if body is None:
        return UnknownProposal(proposal_type, r.opaque())
    return body(r)


@dataclass(frozen=True, slots=True)
class ProposalRef(Encodable):
    """A proposal by reference: RefHash("MLS 1.0 Proposal Reference", its AuthenticatedContent)."""

    ref: bytes

    def write(self, w: Writer) -> None:
        w.opaque(self.ref)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.opaque())


ProposalOrRef = Proposal | ProposalRef

_BY_VALUE = 1
_BY_REFERENCE = 2


def read_proposal_or_ref(r: Reader) -> ProposalOrRef:
    kind = r.u8()
    if kind == _BY_VALUE:
        return read_proposal(r)
    if kind == _BY_REFERENCE:
        return ProposalRef.read(r)
    raise DecodeError(f"ProposalOrRef type {kind} (must be 1 or 2)")


def write_proposal_or_ref(w: Writer, item: ProposalOrRef) -> None:
    w.u8(_BY_REFERENCE if isinstance(item, ProposalRef) else _BY_VALUE)
    item.write(w)
