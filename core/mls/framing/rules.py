"""Which sender may send which content in which wire format (RFC 9420 §6, §6.1, §12.1.8).

Checked on everything received before any signature or key is looked up, and on everything we
protect (sending what a receiver must refuse is our own bug)."""

from __future__ import annotations

from ...errors import RemoteProtocolError
from ..codec import DecodeError
from .content import FramedContent
from .enums import ContentType, SenderType, WireFormat

__all__ = ["FramingRuleError", "check_framing_rules", "EXTERNAL_PROPOSAL_TYPES", "ADD_PROPOSAL_TYPE"]

ADD_PROPOSAL_TYPE = 1
#: proposal types an external sender may send (the "External" column of RFC 9420 §17.4):
#: add, remove, psk, reinit, group_context_extensions
EXTERNAL_PROPOSAL_TYPES = frozenset({1, 3, 4, 5, 7})


class FramingRuleError(RemoteProtocolError):
    """A well-formed message that breaks a framing rule (a content its sender may not send)."""

    code = "mls_invalid"

    def __init__(self, reason: str) -> None:
        super().__init__(f"MLS: {reason}")
        self.reason = reason


def _proposal_type(content: FramedContent) -> int:
    # A Proposal starts with its uint16 proposal_type.
    if len(content.body) < 2:
        raise DecodeError("proposal body shorter than its proposal type")
    return int.from_bytes(content.body[:2], "big")


def check_framing_rules(content: FramedContent, wire_format: WireFormat) -> None:
    """Refuse a sender/content/wire-format combination RFC 9420 does not allow."""
    sender_type = content.sender.sender_type
    content_type = content.content_type
    if content_type is ContentType.APPLICATION and wire_format is not WireFormat.PRIVATE_MESSAGE:
        raise FramingRuleError("application data must be sent as a PrivateMessage")
    if wire_format is WireFormat.PRIVATE_MESSAGE and sender_type is not SenderType.MEMBER:
        raise FramingRuleError("only members send PrivateMessages")
    if sender_type is SenderType.EXTERNAL:
        if content_type is not ContentType.PROPOSAL:
            raise FramingRuleError("an external sender may send proposals only")
        if _proposal_type(content) not in EXTERNAL_PROPOSAL_TYPES:
            raise FramingRuleError(f"proposal type {_proposal_type(content)} is not allowed from an external sender")
    elif sender_type is SenderType.NEW_MEMBER_PROPOSAL:
        if content_type is not ContentType.PROPOSAL or _proposal_type(content) != ADD_PROPOSAL_TYPE:
            raise FramingRuleError("a new_member_proposal sender may send an Add proposal only")
    elif sender_type is SenderType.NEW_MEMBER_COMMIT:
        if content_type is not ContentType.COMMIT:
            raise FramingRuleError("a new_member_commit sender may send a commit only")
