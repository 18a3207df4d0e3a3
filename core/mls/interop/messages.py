"""Kind ``messages``: every field of the case decodes with its structure and encodes back to the
same bytes (test-vectors.md "Messages"). The MLSMessage fields must also carry the wire format
(and, for the PublicMessages, the content type) their name says; the proposal fields are the
bare proposal structs (``Add``, ``Update``, ... without the proposal type in front, as
openmls and mlspp write them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...errors import RemoteProtocolError
from ..codec import decode_all
from ..framing import ContentType, MLSMessage, PublicMessage, WireFormat
from ..messages import Commit, GroupSecrets, ProposalType, read_proposal
from ..tree import decode_tree_nodes, encode_tree_nodes
from .expect import VectorMismatch, expect_equal, hex_field

__all__ = ["FIELDS", "PROPOSAL_FIELDS", "check", "reencode"]

#: the proposal fields and the type of the bare struct each holds
PROPOSAL_FIELDS: dict[str, ProposalType] = {
    "add_proposal": ProposalType.ADD,
    "update_proposal": ProposalType.UPDATE,
    "remove_proposal": ProposalType.REMOVE,
    "pre_shared_key_proposal": ProposalType.PSK,
    "re_init_proposal": ProposalType.REINIT,
    "external_init_proposal": ProposalType.EXTERNAL_INIT,
    "group_context_extensions_proposal": ProposalType.GROUP_CONTEXT_EXTENSIONS,
}


def _mls_message(wire_format: WireFormat, content_type: ContentType | None = None) -> Callable[[bytes], bytes]:
    def reencode(data: bytes) -> bytes:
        message = MLSMessage.from_bytes(data)
        if message.wire_format is not wire_format:
            raise VectorMismatch(f"an MLSMessage of wire format {message.wire_format.name.lower()}, expected {wire_format.name.lower()}")
        if content_type is not None:
            assert isinstance(message.body, PublicMessage)  # the wire format says so
            got = message.body.content.content_type
            if got is not content_type:
                raise VectorMismatch(f"content type {got.name.lower()}, expected {content_type.name.lower()}")
        return message.to_bytes()

    return reencode


def _bare_proposal(proposal_type: ProposalType) -> Callable[[bytes], bytes]:
    """A proposal struct without its type: read as the Proposal that has this type in front
    (the one decoder of proposal bodies), written back without it."""
    tag = int(proposal_type).to_bytes(2, "big")

    def reencode(data: bytes) -> bytes:
        proposal = decode_all(tag + data, read_proposal)
        if proposal.proposal_type != proposal_type:  # read_proposal keeps the tag it read
            raise VectorMismatch(f"decoded a proposal of type {proposal.proposal_type}")
        return proposal.to_bytes()[len(tag) :]

    return reencode


def _ratchet_tree(data: bytes) -> bytes:
    return encode_tree_nodes(decode_tree_nodes(data))


#: field -> decode it and encode it again (raising when it does not decode as that structure)
FIELDS: dict[str, Callable[[bytes], bytes]] = {
    "mls_welcome": _mls_message(WireFormat.WELCOME),
    "mls_group_info": _mls_message(WireFormat.GROUP_INFO),
    "mls_key_package": _mls_message(WireFormat.KEY_PACKAGE),
    "ratchet_tree": _ratchet_tree,
    "group_secrets": lambda data: GroupSecrets.from_bytes(data).to_bytes(),
    **{field: _bare_proposal(t) for field, t in PROPOSAL_FIELDS.items()},
    "commit": lambda data: Commit.from_bytes(data).to_bytes(),
    "public_message_application": _mls_message(WireFormat.PUBLIC_MESSAGE, ContentType.APPLICATION),
    "public_message_proposal": _mls_message(WireFormat.PUBLIC_MESSAGE, ContentType.PROPOSAL),
    "public_message_commit": _mls_message(WireFormat.PUBLIC_MESSAGE, ContentType.COMMIT),
    "private_message": _mls_message(WireFormat.PRIVATE_MESSAGE),
}


def reencode(field: str, data: bytes) -> bytes:
    """``data`` decoded as ``field``'s structure and encoded again."""
    return FIELDS[field](data)


def check(case: dict[str, Any]) -> None:
    missing = [f for f in FIELDS if f not in case]
    if missing:
        raise VectorMismatch(f"the case has no {', '.join(missing)}")
    failures = []  # every field is tried: one line names all that fail
    for field in FIELDS:
        data = hex_field(case, field)
        try:
            expect_equal("encoded again", reencode(field, data), data)
        except (RemoteProtocolError, VectorMismatch) as e:
            failures.append(f"{field}: {e}")
    if failures:
        raise VectorMismatch("; ".join(failures))
