"""PrivateMessage (RFC 9420 §6.3): framed content encrypted under the sender's ratchet of the
secret tree, with the sender's identity (leaf, generation, reuse guard) encrypted separately
under a key derived from the epoch's sender_data_secret and a sample of the ciphertext.

``protect_private``/``unprotect_private`` turn an AuthenticatedContent into one and back. Zero
padding is added on the way out and required on the way in (§6.3.1: any non-zero padding byte
makes the message malformed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from ...errors import LocalProtocolError
from ..codec import DecodeError, Encodable, Reader, Writer, decode_all
from .auth import GroupContextLike, SignatureKeyLookup, verify_content
from .content import AuthenticatedContent, FramedContent, FramedContentAuthData, read_body, write_body
from .enums import ContentType, WireFormat
from .public_message import check_group_and_epoch
from .rules import FramingRuleError, check_framing_rules
from ..key_schedule import sender_data_key_nonce
from ..secret_tree import RatchetKey, RatchetKind, SecretTree
from .sender import Sender

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = [
    "PrivateMessage",
    "PrivateMessageContent",
    "SenderData",
    "REUSE_GUARD_BYTES",
    "decrypt_sender_data",
    "protect_private",
    "unprotect_private",
]

REUSE_GUARD_BYTES = 4


@dataclass(frozen=True, slots=True)
class PrivateMessage(Encodable):
    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes
    encrypted_sender_data: bytes
    ciphertext: bytes

    def write(self, w: Writer) -> None:
        w.opaque(self.group_id)
        w.u64(self.epoch)
        self.content_type.write(w)
        w.opaque(self.authenticated_data)
        w.opaque(self.encrypted_sender_data)
        w.opaque(self.ciphertext)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.opaque(), r.u64(), ContentType.read(r), r.opaque(), r.opaque(), r.opaque())


@dataclass(frozen=True, slots=True)
class SenderData(Encodable):
    leaf_index: int
    generation: int
    reuse_guard: bytes

    def write(self, w: Writer) -> None:
        w.u32(self.leaf_index)
        w.u32(self.generation)
        if len(self.reuse_guard) != REUSE_GUARD_BYTES:
            raise LocalProtocolError(f"MLS: a reuse guard is {REUSE_GUARD_BYTES} bytes")
        w.raw(self.reuse_guard)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.u32(), r.u32(), r.raw(REUSE_GUARD_BYTES))


@dataclass(frozen=True, slots=True)
class PrivateMessageContent:
    """The plaintext of PrivateMessage.ciphertext: body, auth data, then zero padding."""

    content_type: ContentType
    body: bytes
    auth: FramedContentAuthData
    padding: int = 0

    def to_bytes(self) -> bytes:
        if self.padding < 0:
            raise LocalProtocolError("MLS: negative padding")
        w = Writer()
        write_body(w, self.content_type, self.body)
        self.auth.write(w, self.content_type)
        w.raw(bytes(self.padding))
        return w.bytes()

    @classmethod
    def from_bytes(cls, data: bytes, content_type: ContentType) -> PrivateMessageContent:
        def read(r: Reader) -> PrivateMessageContent:
            body = read_body(r, content_type)
            auth = FramedContentAuthData.read(r, content_type)
            padding = r.raw(r.remaining)
            # Not a constant-time check: the plaintext is already authenticated, and the
            # padding is no secret of ours.
            if padding.count(0) != len(padding):
                raise DecodeError("PrivateMessage padding has non-zero bytes")
            return cls(content_type, body, auth, len(padding))

        return decode_all(data, read)


def _sender_data_aad(group_id: bytes, epoch: int, content_type: ContentType) -> bytes:
    w = Writer()
    w.opaque(group_id)
    w.u64(epoch)
    content_type.write(w)
    return w.bytes()


def _content_aad(group_id: bytes, epoch: int, content_type: ContentType, authenticated_data: bytes) -> bytes:
    w = Writer()
    w.opaque(group_id)
    w.u64(epoch)
    content_type.write(w)
    w.opaque(authenticated_data)
    return w.bytes()


def _ratchet_kind(content_type: ContentType) -> RatchetKind:
    return RatchetKind.APPLICATION if content_type is ContentType.APPLICATION else RatchetKind.HANDSHAKE


def _guarded(nonce: bytes, reuse_guard: bytes) -> bytes:
    head = bytes(a ^ b for a, b in zip(nonce[:REUSE_GUARD_BYTES], reuse_guard, strict=True))
    return head + nonce[REUSE_GUARD_BYTES:]


def protect_private(
    suite: CipherSuite,
    auth: AuthenticatedContent,
    secret_tree: SecretTree,
    sender_data_secret: bytes,
    reuse_guard: bytes,
    *,
    padding: int = 0,
) -> PrivateMessage:
    """``auth`` (signed for the private wire format by a member) encrypted with the sender's
    next generation; ``reuse_guard`` is 4 fresh random bytes (core is pure: the caller draws
    them), ``padding`` the number of zero bytes appended to the plaintext."""
    content = auth.content
    if auth.wire_format is not WireFormat.PRIVATE_MESSAGE:
        raise LocalProtocolError("MLS: content signed for another wire format cannot be sent as a PrivateMessage")
    try:
        check_framing_rules(content, auth.wire_format)
    except FramingRuleError as exc:
        raise LocalProtocolError(f"MLS: cannot send this as a PrivateMessage: {exc.reason}") from None
    if len(reuse_guard) != REUSE_GUARD_BYTES:
        raise LocalProtocolError(f"MLS: a reuse guard is {REUSE_GUARD_BYTES} bytes")
    leaf = content.sender.index
    plaintext = PrivateMessageContent(content.content_type, content.body, auth.auth, padding).to_bytes()
    aad = _content_aad(content.group_id, content.epoch, content.content_type, content.authenticated_data)
    key = secret_tree.next_key(leaf, _ratchet_kind(content.content_type))
    ciphertext = bytes(suite.seal(key.key, _guarded(key.nonce, reuse_guard), aad, plaintext))
    sd_key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, ciphertext)
    sender_data = SenderData(leaf, key.generation, reuse_guard).to_bytes()
    sd_aad = _sender_data_aad(content.group_id, content.epoch, content.content_type)
    encrypted_sender_data = bytes(suite.seal(sd_key, sd_nonce, sd_aad, sender_data))
    return PrivateMessage(
        content.group_id, content.epoch, content.content_type, content.authenticated_data, encrypted_sender_data, ciphertext
    )


def decrypt_sender_data(suite: CipherSuite, message: PrivateMessage, sender_data_secret: bytes) -> SenderData:
    """The SenderData of ``message`` (DecryptError when it does not decrypt)."""
    key, nonce = sender_data_key_nonce(suite, sender_data_secret, message.ciphertext)
    aad = _sender_data_aad(message.group_id, message.epoch, message.content_type)
    plaintext = suite.open(key, nonce, aad, message.encrypted_sender_data)
    return SenderData.from_bytes(plaintext)


def unprotect_private(
    suite: CipherSuite,
    message: PrivateMessage,
    context: GroupContextLike,
    secret_tree: SecretTree,
    sender_data_secret: bytes,
    signature_key: SignatureKeyLookup,
) -> AuthenticatedContent:
    """The checked AuthenticatedContent of a received PrivateMessage: the group and epoch are
    the context's, sender data and content decrypt, the padding is zero, the signature verifies
    with the key ``signature_key`` gives for the sender's leaf (it refuses a blank leaf). The
    generation's key is used up only when all of that holds (a replay is then refused by the
    secret tree, ``mls_generation``); a forged message leaves the ratchet as it was. The
    confirmation tag of a commit is the caller's to check."""
    check_group_and_epoch(message.group_id, message.epoch, context)
    sender_data = decrypt_sender_data(suite, message, sender_data_secret)
    sender = Sender.member(sender_data.leaf_index)
    aad = _content_aad(message.group_id, message.epoch, message.content_type, message.authenticated_data)

    def open_content(key: RatchetKey) -> AuthenticatedContent:
        plaintext = suite.open(key.key, _guarded(key.nonce, sender_data.reuse_guard), aad, message.ciphertext)
        inner = PrivateMessageContent.from_bytes(plaintext, message.content_type)
        content = FramedContent(
            message.group_id, message.epoch, sender, message.authenticated_data, message.content_type, inner.body
        )
        check_framing_rules(content, WireFormat.PRIVATE_MESSAGE)
        auth = AuthenticatedContent(WireFormat.PRIVATE_MESSAGE, content, inner.auth)
        verify_content(suite, signature_key(sender), auth, context)
        return auth

    kind = _ratchet_kind(message.content_type)
    return secret_tree.open_with(sender_data.leaf_index, kind, sender_data.generation, open_content)
