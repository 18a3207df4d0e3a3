"""MLS message framing (RFC 9420 §6, §8.2): FramedContent and its authentication, PublicMessage
(membership tag), PrivateMessage (content and sender-data encryption, zero padding), MLSMessage,
and the transcript hashes and confirmation tag that commits move."""

from .auth import (
    GroupContextLike,
    SignatureKeyLookup,
    framed_content_tbs,
    membership_tag,
    sign_content,
    verify_content,
    verify_membership_tag,
)
from .content import AuthenticatedContent, FramedContent, FramedContentAuthData
from .enums import ContentType, ProtocolVersion, SenderType, WireFormat
from .errors import WrongEpochError
from .mls_message import MLSMessage
from .private_message import (
    PrivateMessage,
    PrivateMessageContent,
    SenderData,
    decrypt_sender_data,
    protect_private,
    unprotect_private,
)
from .public_message import PublicMessage, check_group_and_epoch, observe_public, protect_public, unprotect_public
from .rules import FramingRuleError, check_framing_rules
from .sender import Sender
from .transcript import (
    confirmation_tag,
    confirmed_transcript_hash,
    interim_transcript_hash,
    next_transcript_hashes,
    verify_confirmation_tag,
)

__all__ = [
    "AuthenticatedContent",
    "ContentType",
    "FramedContent",
    "FramedContentAuthData",
    "FramingRuleError",
    "GroupContextLike",
    "MLSMessage",
    "PrivateMessage",
    "PrivateMessageContent",
    "ProtocolVersion",
    "PublicMessage",
    "Sender",
    "SenderData",
    "SenderType",
    "SignatureKeyLookup",
    "WireFormat",
    "WrongEpochError",
    "check_framing_rules",
    "check_group_and_epoch",
    "confirmation_tag",
    "confirmed_transcript_hash",
    "decrypt_sender_data",
    "framed_content_tbs",
    "interim_transcript_hash",
    "membership_tag",
    "next_transcript_hashes",
    "observe_public",
    "protect_private",
    "protect_public",
    "sign_content",
    "unprotect_private",
    "unprotect_public",
    "verify_confirmation_tag",
    "verify_content",
    "verify_membership_tag",
]
