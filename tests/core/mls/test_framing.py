"""MLS framing encodings and rules (sonet.core.mls.framing): the vectors' MLSMessages decode and
re-encode byte for byte (public, private, welcome, key package), unknown or reserved enum values,
truncation and trailing bytes are malformed, optional fields follow the sender and content type,
and the sender/content/wire-format rules of RFC 9420 §6 are enforced."""

from __future__ import annotations

from typing import Any

import pytest

from sonet.core.errors import LocalProtocolError
from sonet.core.mls.codec import DecodeError, Reader, Writer
from sonet.core.mls.framing import (
    ContentType,
    FramedContent,
    FramedContentAuthData,
    FramingRuleError,
    MLSMessage,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    Sender,
    SenderData,
    SenderType,
    WireFormat,
    check_framing_rules,
)
from sonet.core.mls.key_package import KeyPackage
from sonet.core.mls.messages import Remove, Welcome
from tests.vectors import load_json

PROTECTION: list[dict[str, Any]] = load_json("mls/message-protection.json")
WELCOME: list[dict[str, Any]] = load_json("mls/welcome.json")
MESSAGE_FIELDS = ["proposal_pub", "proposal_priv", "commit_pub", "commit_priv", "application_priv"]
REMOVE = bytes.fromhex("000300000002")  # Remove(leaf 2)
ADD_TYPE_ONLY = b"\x00\x01"  # the rules look at a proposal's type only


def _content(sender: Sender, content_type: ContentType, body: bytes = REMOVE) -> FramedContent:
    return FramedContent(b"group", 7, sender, b"", content_type, body)


@pytest.mark.parametrize("field", MESSAGE_FIELDS)
@pytest.mark.parametrize("case", PROTECTION, ids=lambda c: f"suite{c['cipher_suite']}")
def test_vector_messages_round_trip(case: dict[str, Any], field: str) -> None:
    data = bytes.fromhex(case[field])
    message = MLSMessage.from_bytes(data)
    assert message.to_bytes() == data
    expected = PublicMessage if field.endswith("_pub") else PrivateMessage
    assert isinstance(message.body, expected)


def test_public_message_fields() -> None:
    case = PROTECTION[0]
    commit = MLSMessage.from_bytes(bytes.fromhex(case["commit_pub"])).body
    assert isinstance(commit, PublicMessage)
    assert commit.content.content_type is ContentType.COMMIT
    assert commit.content.sender == Sender.member(1)
    assert commit.content.group_id.hex() == case["group_id"] and commit.content.epoch == case["epoch"]
    assert commit.content.body.hex() == case["commit"]
    assert commit.auth.confirmation_tag is not None and commit.membership_tag is not None
    proposal = MLSMessage.from_bytes(bytes.fromhex(case["proposal_pub"])).body
    assert proposal.auth.confirmation_tag is None
    assert proposal.content.proposal() == Remove(2)
    assert commit.content.commit().to_bytes().hex() == case["commit"]
    with pytest.raises(LocalProtocolError):
        proposal.content.commit()


@pytest.mark.parametrize("case", WELCOME, ids=lambda c: f"suite{c['cipher_suite']}")
def test_welcome_and_key_package_messages_round_trip(case: dict[str, Any]) -> None:
    for field, cls in (("welcome", Welcome), ("key_package", KeyPackage)):
        data = bytes.fromhex(case[field])
        message = MLSMessage.from_bytes(data)
        assert isinstance(message.body, cls)
        assert message.to_bytes() == data


def test_mls_message_body_must_match_wire_format() -> None:
    private = MLSMessage.from_bytes(bytes.fromhex(PROTECTION[0]["application_priv"])).body
    with pytest.raises(LocalProtocolError):
        MLSMessage(WireFormat.PUBLIC_MESSAGE, private)


@pytest.mark.parametrize(
    "data, match",
    [
        ("0002" + "00" * 8, "protocol version 2"),
        ("0000" + "00" * 8, "protocol version 0"),
        ("00010000" + "00" * 8, "wire format 0"),
        ("00010006" + "00" * 8, "wire format 6"),
        ("0001", "truncated"),
        ("", "truncated"),
    ],
)
def test_malformed_mls_message_header(data: str, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        MLSMessage.from_bytes(bytes.fromhex(data))


@pytest.mark.parametrize("field", MESSAGE_FIELDS)
def test_truncated_or_trailing_mls_message_is_malformed(field: str) -> None:
    data = bytes.fromhex(PROTECTION[0][field])
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError):
            MLSMessage.from_bytes(data[:cut])
    with pytest.raises(DecodeError, match="trailing"):
        MLSMessage.from_bytes(data + b"\x00")


def test_unknown_content_and_sender_types_are_malformed() -> None:
    good = _content(Sender.member(3), ContentType.PROPOSAL).to_bytes()
    # group_id "group" (1 + 5 bytes), epoch (8): sender type at 14, then the leaf index
    assert good[14] == SenderType.MEMBER
    for bad_sender_type in (0, 5, 255):
        with pytest.raises(DecodeError, match="sender type"):
            FramedContent.from_bytes(good[:14] + bytes([bad_sender_type]) + good[15:])
    at = 14 + 1 + 4 + 1  # content type after the sender and the empty authenticated_data
    assert good[at] == ContentType.PROPOSAL
    for bad_content_type in (0, 4):
        with pytest.raises(DecodeError, match="content type"):
            FramedContent.from_bytes(good[:at] + bytes([bad_content_type]) + good[at + 1 :])


@pytest.mark.parametrize(
    "sender",
    [Sender.member(0), Sender.external(2), Sender.new_member_proposal(), Sender.new_member_commit(), Sender.member(2**32 - 1)],
)
def test_sender_round_trips(sender: Sender) -> None:
    w = Writer()
    sender.write(w)
    data = w.bytes()
    assert len(data) == (5 if sender.has_index else 1)
    r = Reader(data)
    assert Sender.read(r) == sender
    r.done()


def test_sender_index_is_a_uint32_and_only_for_members_and_external_senders() -> None:
    with pytest.raises(ValueError):
        Sender.member(2**32)
    with pytest.raises(ValueError):
        Sender(SenderType.NEW_MEMBER_COMMIT, 1)


def test_confirmation_tag_is_there_exactly_for_commits() -> None:
    w = Writer()
    with pytest.raises(LocalProtocolError):
        FramedContentAuthData(b"sig").write(w, ContentType.COMMIT)
    with pytest.raises(LocalProtocolError):
        FramedContentAuthData(b"sig", b"tag").write(w, ContentType.APPLICATION)
    commit, proposal = FramedContentAuthData(b"sig", b"tag"), FramedContentAuthData(b"sig")
    for content_type, auth in ((ContentType.COMMIT, commit), (ContentType.PROPOSAL, proposal)):
        w = Writer()
        auth.write(w, content_type)
        r = Reader(w.bytes())
        assert FramedContentAuthData.read(r, content_type) == auth
        r.done()


def test_membership_tag_is_there_exactly_for_member_senders() -> None:
    member = _content(Sender.member(0), ContentType.PROPOSAL)
    with pytest.raises(LocalProtocolError):
        PublicMessage(member, FramedContentAuthData(b"sig")).to_bytes()
    external = _content(Sender.external(0), ContentType.PROPOSAL)
    with pytest.raises(LocalProtocolError):
        PublicMessage(external, FramedContentAuthData(b"sig"), b"tag").to_bytes()
    message = PublicMessage(external, FramedContentAuthData(b"sig"))
    assert PublicMessage.from_bytes(message.to_bytes()) == message


def test_private_message_content_padding() -> None:
    inner = PrivateMessageContent(ContentType.APPLICATION, b"hello", FramedContentAuthData(b"sig"), padding=5)
    data = inner.to_bytes()
    assert data.endswith(bytes(5))
    assert PrivateMessageContent.from_bytes(data, ContentType.APPLICATION) == inner
    for at in (len(data) - 1, len(data) - 5):
        tampered = data[:at] + b"\x01" + data[at + 1 :]
        with pytest.raises(DecodeError, match="padding has non-zero bytes"):
            PrivateMessageContent.from_bytes(tampered, ContentType.APPLICATION)
    with pytest.raises(LocalProtocolError):
        PrivateMessageContent(ContentType.APPLICATION, b"", FramedContentAuthData(b""), padding=-1).to_bytes()


def test_sender_data_encoding() -> None:
    data = SenderData(1, 2, b"\xaa\xbb\xcc\xdd").to_bytes()
    assert data == bytes.fromhex("0000000100000002aabbccdd")
    assert SenderData.from_bytes(data) == SenderData(1, 2, b"\xaa\xbb\xcc\xdd")
    with pytest.raises(DecodeError):
        SenderData.from_bytes(data[:-1])
    with pytest.raises(LocalProtocolError):
        SenderData(1, 2, b"\xaa").to_bytes()


# --- RFC 9420 §6: who may send what, where ---

ALLOWED = [
    (Sender.member(0), ContentType.APPLICATION, b"x", WireFormat.PRIVATE_MESSAGE),
    (Sender.member(0), ContentType.PROPOSAL, REMOVE, WireFormat.PUBLIC_MESSAGE),
    (Sender.member(0), ContentType.COMMIT, b"", WireFormat.PRIVATE_MESSAGE),
    (Sender.external(0), ContentType.PROPOSAL, REMOVE, WireFormat.PUBLIC_MESSAGE),
    (Sender.external(0), ContentType.PROPOSAL, ADD_TYPE_ONLY, WireFormat.PUBLIC_MESSAGE),
    (Sender.new_member_proposal(), ContentType.PROPOSAL, ADD_TYPE_ONLY, WireFormat.PUBLIC_MESSAGE),
    (Sender.new_member_commit(), ContentType.COMMIT, b"", WireFormat.PUBLIC_MESSAGE),
]
REFUSED = [
    (Sender.member(0), ContentType.APPLICATION, b"x", WireFormat.PUBLIC_MESSAGE, "PrivateMessage"),
    (Sender.external(0), ContentType.PROPOSAL, REMOVE, WireFormat.PRIVATE_MESSAGE, "only members"),
    (Sender.new_member_commit(), ContentType.COMMIT, b"", WireFormat.PRIVATE_MESSAGE, "only members"),
    (Sender.external(0), ContentType.COMMIT, b"", WireFormat.PUBLIC_MESSAGE, "proposals only"),
    (Sender.external(0), ContentType.PROPOSAL, b"\x00\x02", WireFormat.PUBLIC_MESSAGE, "proposal type 2"),
    (Sender.external(0), ContentType.PROPOSAL, b"\x00\x06", WireFormat.PUBLIC_MESSAGE, "proposal type 6"),
    (Sender.new_member_proposal(), ContentType.PROPOSAL, REMOVE, WireFormat.PUBLIC_MESSAGE, "Add proposal only"),
    (Sender.new_member_proposal(), ContentType.COMMIT, b"", WireFormat.PUBLIC_MESSAGE, "Add proposal only"),
    (Sender.new_member_commit(), ContentType.PROPOSAL, ADD_TYPE_ONLY, WireFormat.PUBLIC_MESSAGE, "commit only"),
]


@pytest.mark.parametrize("sender, content_type, body, wire_format", ALLOWED)
def test_allowed_framing(sender: Sender, content_type: ContentType, body: bytes, wire_format: WireFormat) -> None:
    check_framing_rules(_content(sender, content_type, body), wire_format)


@pytest.mark.parametrize("sender, content_type, body, wire_format, match", REFUSED)
def test_refused_framing(sender: Sender, content_type: ContentType, body: bytes, wire_format: WireFormat, match: str) -> None:
    with pytest.raises(FramingRuleError, match=match) as raised:
        check_framing_rules(_content(sender, content_type, body), wire_format)
    assert raised.value.code == "mls_invalid"
