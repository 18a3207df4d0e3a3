"""PublicMessage and PrivateMessage protection (sonet.core.mls.framing) over the
message-protection interop vectors of every suite, through the interop kind's ``check``; and
every refusal of §6: tampered ciphertext or sender data, a wrong membership tag or signature, a
message of another group or epoch, a replayed generation, non-zero padding, a content its sender
may not send in that wire format."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sonet.core.errors import DecryptError, LocalProtocolError, RemoteProtocolError, VerifyError
from sonet.core.mls.codec import DecodeError
from sonet.core.mls.crypto import CipherSuite, cipher_suite
from sonet.core.mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramingRuleError,
    MLSMessage,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    WireFormat,
    WrongEpochError,
    membership_tag,
    protect_private,
    protect_public,
    sign_content,
    unprotect_private,
    unprotect_public,
)
from sonet.core.mls.interop import message_protection
from sonet.core.mls.key_schedule import GroupContext
from sonet.core.mls.secret_tree import GenerationError, SecretTree
from tests.vectors import load_json

CASES: list[dict[str, Any]] = load_json("mls/message-protection.json")
GUARD = b"\x01\x02\x03\x04"


def _id(case: dict[str, Any]) -> str:
    return f"suite{case['cipher_suite']}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_vectors(case: dict[str, Any]) -> None:
    message_protection.check(case)


def test_vectors_cover_every_suite() -> None:
    assert sorted(c["cipher_suite"] for c in CASES) == [1, 2, 3, 4, 5, 6, 7]


class Group:
    """One vector case as the receiving member sees it."""

    def __init__(self, case: dict[str, Any]) -> None:
        h = bytes.fromhex
        self.case = case
        self.suite: CipherSuite = cipher_suite(case["cipher_suite"])
        self.context = GroupContext(
            case["cipher_suite"], h(case["group_id"]), case["epoch"], h(case["tree_hash"]), h(case["confirmed_transcript_hash"])
        )
        self.signature_priv, self.signature_pub = h(case["signature_priv"]), h(case["signature_pub"])
        self.encryption_secret, self.sender_data_secret = h(case["encryption_secret"]), h(case["sender_data_secret"])
        self.membership_key = h(case["membership_key"])

    def tree(self, leaves: int = 2) -> SecretTree:
        return SecretTree(self.suite, self.encryption_secret, leaves)

    def key_of(self, sender: Sender) -> bytes:
        return self.signature_pub

    def given(self, field: str) -> Any:
        return MLSMessage.from_bytes(bytes.fromhex(self.case[field])).body

    def unprotect_private(self, message: PrivateMessage, tree: SecretTree | None = None) -> AuthenticatedContent:
        tree = tree or self.tree()
        return unprotect_private(self.suite, message, self.context, tree, self.sender_data_secret, self.key_of)

    def unprotect_public(self, message: PublicMessage) -> AuthenticatedContent:
        return unprotect_public(self.suite, message, self.context, self.membership_key, self.key_of)

    def signed(
        self,
        wire_format: WireFormat,
        content_type: ContentType,
        body: bytes,
        sender: Sender = Sender.member(1),
        tag: bytes | None = None,
    ) -> AuthenticatedContent:
        content = FramedContent(self.context.group_id, self.context.epoch, sender, b"", content_type, body)
        return sign_content(self.suite, self.signature_priv, wire_format, content, self.context, confirmation_tag=tag)


@pytest.fixture(params=CASES, ids=_id)
def group(request: pytest.FixtureRequest) -> Group:
    return Group(request.param)


@pytest.fixture
def suite1() -> Group:
    return Group(CASES[0])


def _with_message(case: dict[str, Any], field: str, body: PublicMessage | PrivateMessage) -> dict[str, Any]:
    changed = copy.deepcopy(case)
    wire_format = WireFormat.PUBLIC_MESSAGE if isinstance(body, PublicMessage) else WireFormat.PRIVATE_MESSAGE
    changed[field] = MLSMessage(wire_format, body).to_bytes().hex()
    return changed


def _flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


# --- the vectors' messages, tampered, fail the kind's check with the right refusal ---


@pytest.mark.parametrize("field", ["proposal_priv", "commit_priv", "application_priv"])
def test_tampered_ciphertext_is_refused(suite1: Group, field: str) -> None:
    message = suite1.given(field)
    tampered = PrivateMessage(**{**_fields(message), "ciphertext": _flip(message.ciphertext, len(message.ciphertext) - 1)})
    with pytest.raises(DecryptError):
        message_protection.check(_with_message(suite1.case, field, tampered))


def test_tampered_sender_data_is_refused(suite1: Group) -> None:
    message = suite1.given("application_priv")
    tampered = PrivateMessage(**{**_fields(message), "encrypted_sender_data": _flip(message.encrypted_sender_data)})
    with pytest.raises(DecryptError):
        message_protection.check(_with_message(suite1.case, "application_priv", tampered))


def test_tampered_authenticated_data_is_refused(suite1: Group) -> None:
    # authenticated_data is in the content AAD, not the sender-data AAD: the content fails
    message = suite1.given("application_priv")
    tampered = PrivateMessage(**{**_fields(message), "authenticated_data": b"x"})
    with pytest.raises(DecryptError):
        suite1.unprotect_private(tampered)


@pytest.mark.parametrize("field", ["proposal_pub", "commit_pub"])
def test_wrong_membership_tag_is_refused(suite1: Group, field: str) -> None:
    message = suite1.given(field)
    tampered = PublicMessage(message.content, message.auth, _flip(message.membership_tag))
    with pytest.raises(VerifyError, match="membership tag"):
        message_protection.check(_with_message(suite1.case, field, tampered))


def test_wrong_membership_key_is_refused(suite1: Group) -> None:
    message = suite1.given("proposal_pub")
    with pytest.raises(VerifyError, match="membership tag"):
        unprotect_public(suite1.suite, message, suite1.context, _flip(suite1.membership_key), suite1.key_of)


def test_tampered_public_content_is_refused(suite1: Group) -> None:
    # a changed authenticated_data breaks the membership tag (checked first) and the signature
    message = suite1.given("proposal_pub")
    content = message.content
    changed = FramedContent(content.group_id, content.epoch, content.sender, b"changed", content.content_type, content.body)
    with pytest.raises(VerifyError):
        suite1.unprotect_public(PublicMessage(changed, message.auth, message.membership_tag))


def test_tampered_signature_is_refused(suite1: Group) -> None:
    message = suite1.given("proposal_pub")
    auth = message.authenticated_content()
    bad_auth = type(auth.auth)(_flip(auth.auth.signature), auth.auth.confirmation_tag)
    bad = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, message.content, bad_auth)
    # a valid membership tag over the bad signature: only the signature check can refuse it
    tag = membership_tag(suite1.suite, suite1.membership_key, bad, suite1.context)
    with pytest.raises(VerifyError, match="signature"):
        suite1.unprotect_public(PublicMessage(message.content, bad_auth, tag))


def test_wrong_signature_key_is_refused(suite1: Group) -> None:
    other = Group(CASES[0])
    other.signature_pub = bytes(32)
    with pytest.raises(VerifyError):
        other.unprotect_private(other.given("application_priv"))


@pytest.mark.parametrize("change", ["epoch", "group_id"])
def test_message_of_another_epoch_or_group_is_refused(suite1: Group, change: str) -> None:
    case = copy.deepcopy(suite1.case)
    if change == "epoch":
        case["epoch"] += 1
    else:
        case["group_id"] = "00" + case["group_id"]
    with pytest.raises(WrongEpochError):
        message_protection.check(case)
    for field in ("proposal_priv", "application_priv"):
        with pytest.raises(WrongEpochError):
            Group(case).unprotect_private(suite1.given(field))
    with pytest.raises(WrongEpochError):
        Group(case).unprotect_public(suite1.given("commit_pub"))


def test_replayed_generation_is_refused(suite1: Group) -> None:
    tree = suite1.tree()
    message = suite1.given("application_priv")
    suite1.unprotect_private(message, tree)
    with pytest.raises(GenerationError, match="used already"):
        suite1.unprotect_private(message, tree)


def test_forged_message_does_not_use_up_the_key(suite1: Group) -> None:
    tree = suite1.tree()
    message = suite1.given("application_priv")
    with pytest.raises(DecryptError):
        suite1.unprotect_private(PrivateMessage(**{**_fields(message), "ciphertext": _flip(message.ciphertext)}), tree)
    assert suite1.unprotect_private(message, tree).content.body == bytes.fromhex(suite1.case["application"])


def test_non_zero_padding_is_refused(suite1: Group, monkeypatch: pytest.MonkeyPatch) -> None:
    honest = PrivateMessageContent.to_bytes
    monkeypatch.setattr(PrivateMessageContent, "to_bytes", lambda self: honest(self) + b"\x00\x07")
    signed = suite1.signed(WireFormat.PRIVATE_MESSAGE, ContentType.APPLICATION, b"hi")
    message = protect_private(suite1.suite, signed, suite1.tree(), suite1.sender_data_secret, GUARD, padding=4)
    tree = suite1.tree()
    with pytest.raises(DecodeError, match="padding has non-zero bytes"):
        suite1.unprotect_private(message, tree)


def test_zero_padding_round_trips_and_hides_the_length(group: Group) -> None:
    sizes = []
    for padding in (0, 1, 100):
        signed = group.signed(WireFormat.PRIVATE_MESSAGE, ContentType.APPLICATION, b"hello")
        message = protect_private(group.suite, signed, group.tree(), group.sender_data_secret, GUARD, padding=padding)
        sizes.append(len(message.ciphertext))
        assert group.unprotect_private(message).content.body == b"hello"
    assert sizes[1] - sizes[0] == 1 and sizes[2] - sizes[0] == 100


def test_sender_leaf_outside_the_tree_is_refused(suite1: Group) -> None:
    signed = suite1.signed(WireFormat.PRIVATE_MESSAGE, ContentType.APPLICATION, b"hi", sender=Sender.member(5))
    message = protect_private(suite1.suite, signed, suite1.tree(8), suite1.sender_data_secret, GUARD)
    with pytest.raises(RemoteProtocolError, match="outside a tree"):
        suite1.unprotect_private(message)


def test_generations_advance_and_out_of_order_is_accepted(suite1: Group) -> None:
    sender, receiver = suite1.tree(), suite1.tree()
    signed = [suite1.signed(WireFormat.PRIVATE_MESSAGE, ContentType.APPLICATION, bytes([i])) for i in range(3)]
    messages = [protect_private(suite1.suite, s, sender, suite1.sender_data_secret, GUARD) for s in signed]
    for i in (2, 0, 1):
        assert suite1.unprotect_private(messages[i], receiver).content.body == bytes([i])


# --- what a sender may send where (RFC 9420 §6) ---


def test_application_data_is_never_a_public_message(suite1: Group) -> None:
    signed = suite1.signed(WireFormat.PUBLIC_MESSAGE, ContentType.APPLICATION, b"hi")
    with pytest.raises(LocalProtocolError, match="PrivateMessage"):
        protect_public(suite1.suite, signed, suite1.context, suite1.membership_key)
    # received anyway (with a valid tag and signature): refused
    tag = membership_tag(suite1.suite, suite1.membership_key, signed, suite1.context)
    forged = PublicMessage(signed.content, signed.auth, tag)
    with pytest.raises(FramingRuleError, match="PrivateMessage"):
        suite1.unprotect_public(forged)


def test_external_sender_is_refused_in_private_messages(suite1: Group) -> None:
    remove = bytes.fromhex(suite1.case["proposal"])
    signed = suite1.signed(WireFormat.PRIVATE_MESSAGE, ContentType.PROPOSAL, remove, sender=Sender.external(0))
    with pytest.raises(LocalProtocolError, match="only members"):
        protect_private(suite1.suite, signed, suite1.tree(), suite1.sender_data_secret, GUARD)


def test_signature_is_bound_to_the_wire_format(suite1: Group) -> None:
    # content signed for a PrivateMessage does not verify as a PublicMessage
    signed = suite1.signed(WireFormat.PRIVATE_MESSAGE, ContentType.PROPOSAL, bytes.fromhex(suite1.case["proposal"]))
    as_public = AuthenticatedContent(WireFormat.PUBLIC_MESSAGE, signed.content, signed.auth)
    tag = membership_tag(suite1.suite, suite1.membership_key, as_public, suite1.context)
    message = PublicMessage(signed.content, signed.auth, tag)
    with pytest.raises(VerifyError, match="signature"):
        suite1.unprotect_public(message)


def test_protect_refuses_content_signed_for_the_other_wire_format(suite1: Group) -> None:
    public = suite1.signed(WireFormat.PUBLIC_MESSAGE, ContentType.PROPOSAL, bytes.fromhex(suite1.case["proposal"]))
    with pytest.raises(LocalProtocolError):
        protect_private(suite1.suite, public, suite1.tree(), suite1.sender_data_secret, GUARD)
    private = suite1.signed(WireFormat.PRIVATE_MESSAGE, ContentType.PROPOSAL, bytes.fromhex(suite1.case["proposal"]))
    with pytest.raises(LocalProtocolError):
        protect_public(suite1.suite, private, suite1.context, suite1.membership_key)


def _fields(message: PrivateMessage) -> dict[str, Any]:
    return {name: getattr(message, name) for name in PrivateMessage.__dataclass_fields__}
