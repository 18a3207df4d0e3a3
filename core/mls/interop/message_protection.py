"""Kind ``message-protection``: for each of the case's proposal, commit and application, the
given PublicMessage (not for application) and PrivateMessage unprotect with the case's secrets
to the raw content, and content we protect ourselves unprotects again; protecting application
data as a PublicMessage is refused. The sender is the member at leaf 1 of a 2-member group."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import LocalProtocolError
from ..framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    MLSMessage,
    PrivateMessage,
    PublicMessage,
    Sender,
    WireFormat,
    protect_private,
    protect_public,
    sign_content,
    unprotect_private,
    unprotect_public,
)
from ..key_schedule import GroupContext
from ..secret_tree import SecretTree
from .expect import VectorMismatch, expect_equal, hex_field

if TYPE_CHECKING:
    from ..crypto import CipherSuite

__all__ = ["check", "check_with"]

SENDER = Sender.member(1)
LEAF_COUNT = 2
#: the padding of the PrivateMessages we protect (any length must round-trip)
PADDING = 11


class _Case:
    def __init__(self, suite: CipherSuite, case: dict[str, Any]) -> None:
        self.suite = suite
        self.context = GroupContext(
            cipher_suite=case["cipher_suite"],
            group_id=hex_field(case, "group_id"),
            epoch=case["epoch"],
            tree_hash=hex_field(case, "tree_hash"),
            confirmed_transcript_hash=hex_field(case, "confirmed_transcript_hash"),
        )
        # suite 5's P-521 signature_priv has 65 bytes (leading zero dropped): mls_sign reads it
        self.signature_priv = hex_field(case, "signature_priv")
        self.signature_pub = hex_field(case, "signature_pub")
        self.encryption_secret = hex_field(case, "encryption_secret")
        self.sender_data_secret = hex_field(case, "sender_data_secret")
        self.membership_key = hex_field(case, "membership_key")

    def signature_key(self, sender: Sender) -> bytes:
        if sender != SENDER:
            raise VectorMismatch(f"message from {sender}, the vectors' sender is leaf 1")
        return self.signature_pub

    def secret_tree(self) -> SecretTree:
        return SecretTree(self.suite, self.encryption_secret, LEAF_COUNT)

    def content(self, content_type: ContentType, body: bytes) -> FramedContent:
        return FramedContent(self.context.group_id, self.context.epoch, SENDER, b"", content_type, body)

    def sign(self, wire_format: WireFormat, content: FramedContent, tag: bytes | None) -> AuthenticatedContent:
        return sign_content(self.suite, self.signature_priv, wire_format, content, self.context, confirmation_tag=tag)

    def unprotect_public(self, message: PublicMessage) -> AuthenticatedContent:
        return unprotect_public(self.suite, message, self.context, self.membership_key, self.signature_key)

    def unprotect_private(self, message: PrivateMessage, tree: SecretTree) -> AuthenticatedContent:
        return unprotect_private(self.suite, message, self.context, tree, self.sender_data_secret, self.signature_key)


def _decode(data: bytes, wire_format: WireFormat, what: str) -> Any:
    message = MLSMessage.from_bytes(data)
    expect_equal(f"{what} wire format", message.wire_format, wire_format)
    expect_equal(f"{what} re-encoded", message.to_bytes(), data)
    return message.body


def _expect_content(what: str, auth: AuthenticatedContent, content_type: ContentType, raw: bytes) -> None:
    expect_equal(f"{what} content type", auth.content.content_type, content_type)
    expect_equal(f"{what} sender", auth.content.sender, SENDER)
    expect_equal(f"{what} content", auth.content.body, raw)


def _check_public(c: _Case, name: str, content_type: ContentType, raw: bytes, case: dict[str, Any]) -> bytes | None:
    """The public message's checks; returns its confirmation tag (commits) for our own."""
    given = _decode(hex_field(case, f"{name}_pub"), WireFormat.PUBLIC_MESSAGE, f"{name}_pub")
    assert isinstance(given, PublicMessage)
    _expect_content(f"{name}_pub", c.unprotect_public(given), content_type, raw)
    tag = given.auth.confirmation_tag
    signed = c.sign(WireFormat.PUBLIC_MESSAGE, c.content(content_type, raw), tag)
    ours = protect_public(c.suite, signed, c.context, c.membership_key)
    back = _decode(MLSMessage(WireFormat.PUBLIC_MESSAGE, ours).to_bytes(), WireFormat.PUBLIC_MESSAGE, f"our {name} PublicMessage")
    _expect_content(f"our {name} PublicMessage", c.unprotect_public(back), content_type, raw)
    return tag


def _check_application_not_public(c: _Case, raw: bytes) -> None:
    signed = c.sign(WireFormat.PUBLIC_MESSAGE, c.content(ContentType.APPLICATION, raw), None)
    try:
        protect_public(c.suite, signed, c.context, c.membership_key)
    except LocalProtocolError:
        return
    raise VectorMismatch("application data was protected as a PublicMessage")


def _check_private(c: _Case, name: str, content_type: ContentType, raw: bytes, tag: bytes | None, case: dict[str, Any]) -> None:
    given = _decode(hex_field(case, f"{name}_priv"), WireFormat.PRIVATE_MESSAGE, f"{name}_priv")
    assert isinstance(given, PrivateMessage)
    _expect_content(f"{name}_priv", c.unprotect_private(given, c.secret_tree()), content_type, raw)
    signed = c.sign(WireFormat.PRIVATE_MESSAGE, c.content(content_type, raw), tag)
    # core is pure: a fixed reuse guard stands in for the sender's random one
    ours = protect_private(c.suite, signed, c.secret_tree(), c.sender_data_secret, b"\x5a\xa5\x0f\xf0", padding=PADDING)
    encoded = MLSMessage(WireFormat.PRIVATE_MESSAGE, ours).to_bytes()
    back = _decode(encoded, WireFormat.PRIVATE_MESSAGE, f"our {name} PrivateMessage")
    _expect_content(f"our {name} PrivateMessage", c.unprotect_private(back, c.secret_tree()), content_type, raw)


def check(case: dict[str, Any]) -> None:
    from ..crypto import cipher_suite

    check_with(cipher_suite(case["cipher_suite"]), case)


def check_with(suite: CipherSuite, case: dict[str, Any]) -> None:
    c = _Case(suite, case)
    for name, content_type in (("proposal", ContentType.PROPOSAL), ("commit", ContentType.COMMIT)):
        raw = hex_field(case, name)
        tag = _check_public(c, name, content_type, raw, case)
        _check_private(c, name, content_type, raw, tag, case)
    application = hex_field(case, "application")
    _check_application_not_public(c, application)
    _check_private(c, "application", ContentType.APPLICATION, application, None, case)
