"""Transcript hashes and the confirmation tag (sonet.core.mls.framing, RFC 9420 §8.2) over the
transcript-hashes interop vectors of every suite; a wrong tag, a wrong previous hash, a changed
commit and a non-commit are refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sonet.core.errors import LocalProtocolError, VerifyError
from sonet.core.mls.codec import DecodeError
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    WireFormat,
    confirmation_tag,
    next_transcript_hashes,
    verify_confirmation_tag,
)
from sonet.core.mls.interop import transcript_hashes
from sonet.core.mls.interop.expect import VectorMismatch
from tests.vectors import load_json

CASES: list[dict[str, Any]] = load_json("mls/transcript-hashes.json")


def _id(case: dict[str, Any]) -> str:
    return f"suite{case['cipher_suite']}"


def _auth(case: dict[str, Any]) -> AuthenticatedContent:
    return AuthenticatedContent.from_bytes(bytes.fromhex(case["authenticated_content"]))


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_vectors(case: dict[str, Any]) -> None:
    transcript_hashes.check(case)


def test_vectors_cover_every_suite() -> None:
    assert sorted(c["cipher_suite"] for c in CASES) == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_confirmation_tag_is_the_mac_of_the_confirmed_hash(case: dict[str, Any]) -> None:
    suite = cipher_suite(case["cipher_suite"])
    tag = confirmation_tag(suite, bytes.fromhex(case["confirmation_key"]), bytes.fromhex(case["confirmed_transcript_hash_after"]))
    assert tag == _auth(case).auth.confirmation_tag


def test_wrong_confirmation_tag_is_refused() -> None:
    case = copy.deepcopy(CASES[0])
    auth = _auth(case)
    assert auth.auth.confirmation_tag is not None
    bad_tag = bytes([auth.auth.confirmation_tag[0] ^ 1]) + auth.auth.confirmation_tag[1:]
    bad = AuthenticatedContent(auth.wire_format, auth.content, FramedContentAuthData(auth.auth.signature, bad_tag))
    case["authenticated_content"] = bad.to_bytes().hex()
    with pytest.raises(VerifyError, match="confirmation tag"):
        transcript_hashes.check(case)


def test_wrong_confirmation_key_is_refused() -> None:
    case = CASES[0]
    suite = cipher_suite(case["cipher_suite"])
    tag = _auth(case).auth.confirmation_tag
    assert tag is not None
    with pytest.raises(VerifyError):
        verify_confirmation_tag(suite, bytes(32), bytes.fromhex(case["confirmed_transcript_hash_after"]), tag)


def test_other_previous_hash_gives_other_hashes() -> None:
    case = copy.deepcopy(CASES[0])
    case["interim_transcript_hash_before"] = "00" * 32
    with pytest.raises(VectorMismatch):
        transcript_hashes.check(case)


def test_hashes_cover_the_signature_and_the_tag() -> None:
    case = CASES[0]
    suite = cipher_suite(case["cipher_suite"])
    before = bytes.fromhex(case["interim_transcript_hash_before"])
    auth = _auth(case)
    assert auth.auth.confirmation_tag is not None
    confirmed, interim = next_transcript_hashes(suite, before, auth)
    other_auth = FramedContentAuthData(b"x" + auth.auth.signature, auth.auth.confirmation_tag)
    other_sig = AuthenticatedContent(auth.wire_format, auth.content, other_auth)
    assert next_transcript_hashes(suite, before, other_sig)[0] != confirmed
    other_tag = AuthenticatedContent(auth.wire_format, auth.content, FramedContentAuthData(auth.auth.signature, b"x"))
    confirmed2, interim2 = next_transcript_hashes(suite, before, other_tag)
    assert confirmed2 == confirmed and interim2 != interim  # the tag is in the interim hash only


def test_only_commits_move_the_transcript() -> None:
    auth = _auth(CASES[0])
    c = auth.content
    proposal = AuthenticatedContent(
        auth.wire_format,
        FramedContent(c.group_id, c.epoch, c.sender, c.authenticated_data, ContentType.PROPOSAL, bytes.fromhex("000300000002")),
        FramedContentAuthData(auth.auth.signature),
    )
    with pytest.raises(LocalProtocolError, match="commits only"):
        next_transcript_hashes(cipher_suite(1), b"", proposal)
    case = copy.deepcopy(CASES[0])
    case["authenticated_content"] = proposal.to_bytes().hex()
    with pytest.raises(VectorMismatch, match="not a commit"):
        transcript_hashes.check(case)


@pytest.mark.parametrize("wire_format", [0, 3, 4, 5, 6, 0xFFFF])
def test_authenticated_content_of_another_wire_format_is_malformed(wire_format: int) -> None:
    data = bytearray.fromhex(CASES[0]["authenticated_content"])
    data[0:2] = wire_format.to_bytes(2, "big")
    with pytest.raises(DecodeError):
        AuthenticatedContent.from_bytes(bytes(data))


def test_truncated_or_trailing_authenticated_content_is_malformed() -> None:
    data = bytes.fromhex(CASES[0]["authenticated_content"])
    with pytest.raises(DecodeError):
        AuthenticatedContent.from_bytes(data[:-1])
    with pytest.raises(DecodeError, match="trailing"):
        AuthenticatedContent.from_bytes(data + b"\x00")
    assert _auth(CASES[0]).wire_format in (WireFormat.PUBLIC_MESSAGE, WireFormat.PRIVATE_MESSAGE)
