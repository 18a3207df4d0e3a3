"""PublicMessage (RFC 9420 §6.2): framed content sent signed, not encrypted, with a membership
tag when the sender is a member. ``protect_public``/``unprotect_public`` turn an
AuthenticatedContent into one and back, with every check of §6 on the way in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self, TYPE_CHECKING

from ...errors import LocalProtocolError, VerifyError
from ..codec import Encodable, Reader, Writer
from .auth import GroupContextLike, SignatureKeyLookup, membership_tag, verify_content, verify_membership_tag
from .content import AuthenticatedContent, FramedContent, FramedContentAuthData
from .enums import WireFormat
from .errors import WrongEpochError
from .rules import FramingRuleError, check_framing_rules

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["PublicMessage", "protect_public", "unprotect_public", "observe_public", "check_group_and_epoch"]


@dataclass(frozen=True, slots=True)
class PublicMessage(Encodable):
    content: FramedContent
    auth: FramedContentAuthData
    #: present exactly when the sender is a member
    membership_tag: bytes | None = None

    def write(self, w: Writer) -> None:
        self.content.write(w)
        self.auth.write(w, self.content.content_type)
        if self.content.sender.is_member:
            if self.membership_tag is None:
                raise LocalProtocolError("MLS: a member's PublicMessage needs a membership tag")
            w.opaque(self.membership_tag)
        elif self.membership_tag is not None:
            raise LocalProtocolError("MLS: only a member's PublicMessage carries a membership tag")

    @classmethod
    def read(cls, r: Reader) -> Self:
        content = FramedContent.read(r)
        auth = FramedContentAuthData.read(r, content.content_type)
        tag = r.opaque() if content.sender.is_member else None
        return cls(content, auth, tag)

    def authenticated_content(self) -> AuthenticatedContent:
        return AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, self.content, self.auth)


def check_group_and_epoch(group_id: bytes, epoch: int, context: GroupContextLike) -> None:
    if group_id != context.group_id:
        raise WrongEpochError("a message of another group")
    if epoch != context.epoch:
        raise WrongEpochError(f"a message of epoch {epoch}, the group is at epoch {context.epoch}")


def protect_public(
    suite: CipherSuite, auth: AuthenticatedContent, context: GroupContextLike, membership_key: bytes | None
) -> PublicMessage:
    """``auth`` (signed for the public wire format) as a PublicMessage; ``membership_key`` is
    needed for a member sender."""
    if auth.wire_format is not WireFormat.PUBLIC_MESSAGE:
        raise LocalProtocolError("MLS: content signed for another wire format cannot be sent as a PublicMessage")
    try:
        check_framing_rules(auth.content, auth.wire_format)
    except FramingRuleError as exc:
        raise LocalProtocolError(f"MLS: cannot send this as a PublicMessage: {exc.reason}") from None
    tag = None
    if auth.content.sender.is_member:
        if membership_key is None:
            raise LocalProtocolError("MLS: a member's PublicMessage needs the membership key")
        tag = membership_tag(suite, membership_key, auth, context)
    return PublicMessage(auth.content, auth.auth, tag)


def unprotect_public(
    suite: CipherSuite,
    message: PublicMessage,
    context: GroupContextLike,
    membership_key: bytes | None,
    signature_key: SignatureKeyLookup,
) -> AuthenticatedContent:
    """The checked AuthenticatedContent of a received PublicMessage: the group and epoch are the
    context's, the sender may send this content, the membership tag (member senders) and the
    signature verify. The confirmation tag of a commit is the caller's to check (it needs the
    next epoch's key schedule)."""
    auth = _framed(message, context)
    if message.content.sender.is_member:
        if membership_key is None or message.membership_tag is None:
            raise VerifyError("MLS: a member's PublicMessage without its membership tag or key")
        verify_membership_tag(suite, membership_key, auth, context, message.membership_tag)
    verify_content(suite, signature_key(message.content.sender), auth, context)
    return auth


def observe_public(
    suite: CipherSuite, message: PublicMessage, context: GroupContextLike, signature_key: SignatureKeyLookup
) -> AuthenticatedContent:
    """``unprotect_public`` for an observer without the epoch's secrets (a delivery service):
    every check but the membership tag, which needs the membership key. The signature still
    binds the content to the group context, so it is good for this group and epoch only."""
    auth = _framed(message, context)
    verify_content(suite, signature_key(message.content.sender), auth, context)
    return auth


def _framed(message: PublicMessage, context: GroupContextLike) -> AuthenticatedContent:
    """The checks before any key: the context's group and epoch, the §6 sender/content rules."""
    content = message.content
    check_group_and_epoch(content.group_id, content.epoch, context)
    check_framing_rules(content, WireFormat.PUBLIC_MESSAGE)
    return message.authenticated_content()
