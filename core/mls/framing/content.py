"""FramedContent, FramedContentAuthData and AuthenticatedContent (RFC 9420 §6, §6.1).

The body of a FramedContent is kept as its encoded bytes: ``application_data`` for application
messages, the encoded ``Proposal`` or ``Commit`` struct otherwise. Encoding, signing and
transcript hashing need nothing more; decoding finds where a proposal or commit ends by reading
it with core/mls/messages/, and ``proposal()``/``commit()`` give the typed struct to whoever
applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from ...errors import LocalProtocolError
from ..codec import DecodeError, Encodable, Reader, Writer, decode_all
from ..messages import Commit, Proposal, read_proposal
from .enums import ContentType, WireFormat
from .sender import Sender

__all__ = [
    "FramedContent",
    "FramedContentAuthData",
    "AuthenticatedContent",
    "read_body",
    "PROTECTED_WIRE_FORMATS",
]

#: the wire formats that carry a FramedContent (the others carry Welcome, GroupInfo, KeyPackage)
PROTECTED_WIRE_FORMATS = (WireFormat.PUBLIC_MESSAGE, WireFormat.PRIVATE_MESSAGE)


def read_body(r: Reader, content_type: ContentType) -> bytes:
    """The body of a FramedContent or PrivateMessageContent, as its exact encoded bytes."""
    return _read_body_decoded(r, content_type)[0]


def _read_body_decoded(r: Reader, content_type: ContentType) -> tuple[bytes, Proposal | Commit | None]:
    """The body's exact bytes (what signatures and transcript hashes cover) and, for a proposal
    or commit, the struct they decode to: reading it is how its end is found (the encoding is
    canonical, so the struct encodes back to these bytes)."""
    if content_type is ContentType.APPLICATION:
        return r.opaque(), None
    if content_type is ContentType.PROPOSAL:
        proposal, body = r.read_encoded(read_proposal)
        return body, proposal
    commit, body = r.read_encoded(Commit.read)
    return body, commit


def write_body(w: Writer, content_type: ContentType, body: bytes) -> None:
    if content_type is ContentType.APPLICATION:
        w.opaque(body)
    else:
        w.raw(body)


@dataclass(frozen=True, slots=True)
class FramedContent(Encodable):
    group_id: bytes
    epoch: int
    sender: Sender
    authenticated_data: bytes
    content_type: ContentType
    #: application_data, or the encoded Proposal / Commit (see the module docstring)
    body: bytes
    #: (body, its Proposal or Commit) when read off the wire, so a 1,500-member commit is
    #: decoded once; used only while ``body`` is that very object (``replace`` may change it)
    decoded: tuple[bytes, Proposal | Commit] | None = field(default=None, compare=False, repr=False)

    def write(self, w: Writer) -> None:
        w.opaque(self.group_id)
        w.u64(self.epoch)
        self.sender.write(w)
        w.opaque(self.authenticated_data)
        self.content_type.write(w)
        write_body(w, self.content_type, self.body)

    @classmethod
    def read(cls, r: Reader) -> Self:
        group_id = r.opaque()
        epoch = r.u64()
        sender = Sender.read(r)
        authenticated_data = r.opaque()
        content_type = ContentType.read(r)
        body, decoded = _read_body_decoded(r, content_type)
        return cls(group_id, epoch, sender, authenticated_data, content_type, body, None if decoded is None else (body, decoded))

    def _cached(self) -> Proposal | Commit | None:
        return self.decoded[1] if self.decoded is not None and self.decoded[0] is self.body else None

    def proposal(self) -> Proposal:
        """The body as a ``Proposal`` (content type proposal only)."""
        self._expect(ContentType.PROPOSAL)
        cached = self._cached()
        return cached if cached is not None and not isinstance(cached, Commit) else decode_all(self.body, read_proposal)

    def commit(self) -> Commit:
        """The body as a ``Commit`` (content type commit only)."""
        self._expect(ContentType.COMMIT)
        cached = self._cached()
        return cached if isinstance(cached, Commit) else Commit.from_bytes(self.body)

    def _expect(self, content_type: ContentType) -> None:
        if self.content_type is not content_type:
            raise LocalProtocolError(f"MLS: a {self.content_type.name.lower()} content has no {content_type.name.lower()}")


@dataclass(frozen=True, slots=True)
class FramedContentAuthData:
    """The signature over FramedContentTBS, and for a commit its confirmation tag. Not
    ``Encodable`` on its own: whether the tag is there depends on the content type."""

    signature: bytes
    #: MAC(confirmation_key, confirmed_transcript_hash): present exactly for commits
    confirmation_tag: bytes | None = None

    def write(self, w: Writer, content_type: ContentType) -> None:
        w.opaque(self.signature)
        if content_type is ContentType.COMMIT:
            if self.confirmation_tag is None:
                raise LocalProtocolError("MLS: a commit needs a confirmation tag")
            w.opaque(self.confirmation_tag)
        elif self.confirmation_tag is not None:
            raise LocalProtocolError(f"MLS: a {content_type.name.lower()} carries no confirmation tag")

    @classmethod
    def read(cls, r: Reader, content_type: ContentType) -> FramedContentAuthData:
        signature = r.opaque()
        tag = r.opaque() if content_type is ContentType.COMMIT else None
        return cls(signature, tag)


@dataclass(frozen=True, slots=True)
class AuthenticatedContent(Encodable):
    """A FramedContent with its authentication and the wire format it is (to be) sent in: the
    unit that is signed, that proposal references and transcript hashes cover."""

    wire_format: WireFormat
    content: FramedContent
    auth: FramedContentAuthData

    def write(self, w: Writer) -> None:
        if self.wire_format not in PROTECTED_WIRE_FORMATS:
            raise LocalProtocolError(f"MLS: framed content cannot be sent as {self.wire_format.name.lower()}")
        self.wire_format.write(w)
        self.content.write(w)
        self.auth.write(w, self.content.content_type)

    @classmethod
    def read(cls, r: Reader) -> Self:
        wire_format = WireFormat.read(r)
        if wire_format not in PROTECTED_WIRE_FORMATS:
            raise DecodeError(f"AuthenticatedContent with wire format {wire_format.name.lower()}")
        content = FramedContent.read(r)
        return cls(wire_format, content, FramedContentAuthData.read(r, content.content_type))
