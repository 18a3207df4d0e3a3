"""Signing and verifying framed content (RFC 9420 §6.1) and the membership tag (§6.2).

FramedContentTBS binds the content to its wire format and, for members and new members by
commit, to the GroupContext of the epoch: a signature is good for one group, one epoch, one
wire format. The membership tag is a MAC over the same plus the auth data, keyed with the
epoch's membership_key: it shows a PublicMessage comes from someone who holds the epoch's secrets.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Protocol, TYPE_CHECKING

from ...errors import VerifyError
from ..codec import Writer
from .content import AuthenticatedContent, FramedContent, FramedContentAuthData
from .enums import ProtocolVersion, SenderType, WireFormat
from .sender import Sender

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = [
    "GroupContextLike",
    "SignatureKeyLookup",
    "framed_content_tbs",
    "sign_content",
    "verify_content",
    "membership_tag",
    "verify_membership_tag",
]

SIGN_LABEL = b"FramedContentTBS"


class GroupContextLike(Protocol):
    """What framing needs of core/mls/key_schedule/'s GroupContext."""

    @property
    def group_id(self) -> bytes: ...

    @property
    def epoch(self) -> int: ...

    def to_bytes(self) -> bytes: ...


#: the signature public key of a sender (the caller knows the tree and the external senders;
#: raise for a sender that has none, e.g. a blank leaf)
SignatureKeyLookup = Callable[[Sender], bytes]


def _write_tbs(w: Writer, wire_format: WireFormat, content: FramedContent, context: GroupContextLike | None) -> None:
    ProtocolVersion.MLS10.write(w)
    wire_format.write(w)
    content.write(w)
    if content.sender.sender_type in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT):
        if context is None:
            raise VerifyError("MLS: a member's framed content is signed over the group context, and none was given")
        w.raw(context.to_bytes())


def framed_content_tbs(wire_format: WireFormat, content: FramedContent, context: GroupContextLike | None) -> bytes:
    """The encoded FramedContentTBS (``context`` is needed for member and new-member-commit senders)."""
    w = Writer()
    _write_tbs(w, wire_format, content, context)
    return w.bytes()


def sign_content(
    suite: CipherSuite,
    signature_priv: bytes,
    wire_format: WireFormat,
    content: FramedContent,
    context: GroupContextLike | None,
    *,
    confirmation_tag: bytes | None = None,
) -> AuthenticatedContent:
    """AuthenticatedContent signed with SignWithLabel(., "FramedContentTBS", .); a commit takes
    its ``confirmation_tag`` (computed by the caller from the new epoch's confirmation key)."""
    tbs = framed_content_tbs(wire_format, content, context)
    signature = suite.sign_with_label(signature_priv, SIGN_LABEL, tbs)
    return AuthenticatedContent(wire_format, content, FramedContentAuthData(signature, confirmation_tag))


def verify_content(
    suite: CipherSuite, signature_pub: bytes, auth: AuthenticatedContent, context: GroupContextLike | None
) -> None:
    """VerifyError unless ``auth``'s signature verifies with ``signature_pub``."""
    tbs = framed_content_tbs(auth.wire_format, auth.content, context)
    if not suite.verify_with_label(signature_pub, SIGN_LABEL, tbs, auth.auth.signature):
        raise VerifyError("MLS: the framed content's signature does not verify")


def _tbm(auth: AuthenticatedContent, context: GroupContextLike) -> bytes:
    w = Writer()
    _write_tbs(w, auth.wire_format, auth.content, context)
    auth.auth.write(w, auth.content.content_type)
    return w.bytes()


def membership_tag(suite: CipherSuite, membership_key: bytes, auth: AuthenticatedContent, context: GroupContextLike) -> bytes:
    """MAC(membership_key, AuthenticatedContentTBM)."""
    return bytes(suite.mac(membership_key, _tbm(auth, context)))


def verify_membership_tag(
    suite: CipherSuite, membership_key: bytes, auth: AuthenticatedContent, context: GroupContextLike, tag: bytes
) -> None:
    if not hmac.compare_digest(membership_tag(suite, membership_key, auth, context), tag):
        raise VerifyError("MLS: the PublicMessage's membership tag does not verify")


