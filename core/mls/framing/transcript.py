"""Transcript hashes and the confirmation tag (RFC 9420 §8.2, §6.1).

Each commit moves both hashes: the confirmed hash covers everything of the commit but its
confirmation tag, the interim hash adds the tag. The confirmation tag is a MAC of the new
confirmed hash under the new epoch's confirmation_key: it shows the committer reached the same
epoch secrets as the receiver.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from ...errors import LocalProtocolError, VerifyError
from ..codec import Writer
from .content import AuthenticatedContent
from .enums import ContentType

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = [
    "confirmed_transcript_hash",
    "interim_transcript_hash",
    "next_transcript_hashes",
    "confirmation_tag",
    "verify_confirmation_tag",
]


def _require_commit(auth: AuthenticatedContent) -> bytes:
    if auth.content.content_type is not ContentType.COMMIT or auth.auth.confirmation_tag is None:
        raise LocalProtocolError("MLS: transcript hashes move with commits only")
    return auth.auth.confirmation_tag


def confirmed_transcript_hash(suite: CipherSuite, interim_before: bytes, auth: AuthenticatedContent) -> bytes:
    """Hash(interim_transcript_hash_[n-1] || ConfirmedTranscriptHashInput): the wire format, the
    commit's FramedContent and its signature."""
    _require_commit(auth)
    w = Writer()
    auth.wire_format.write(w)
    auth.content.write(w)
    w.opaque(auth.auth.signature)
    return bytes(suite.hash(interim_before + w.bytes()))


def interim_transcript_hash(suite: CipherSuite, confirmed: bytes, tag: bytes) -> bytes:
    """Hash(confirmed_transcript_hash_[n] || InterimTranscriptHashInput): the confirmation tag."""
    w = Writer()
    w.opaque(tag)
    return bytes(suite.hash(confirmed + w.bytes()))


def next_transcript_hashes(suite: CipherSuite, interim_before: bytes, auth: AuthenticatedContent) -> tuple[bytes, bytes]:
    """(confirmed, interim) transcript hashes after the commit ``auth``."""
    tag = _require_commit(auth)
    confirmed = confirmed_transcript_hash(suite, interim_before, auth)
    return confirmed, interim_transcript_hash(suite, confirmed, tag)


def confirmation_tag(suite: CipherSuite, confirmation_key: bytes, confirmed: bytes) -> bytes:
    """MAC(confirmation_key, confirmed_transcript_hash)."""
    return bytes(suite.mac(confirmation_key, confirmed))


def verify_confirmation_tag(suite: CipherSuite, confirmation_key: bytes, confirmed: bytes, tag: bytes) -> None:
    """VerifyError unless ``tag`` is the confirmation tag of ``confirmed`` (compared in constant time)."""
    if not hmac.compare_digest(confirmation_tag(suite, confirmation_key, confirmed), tag):
        raise VerifyError("MLS: the commit's confirmation tag does not verify")
