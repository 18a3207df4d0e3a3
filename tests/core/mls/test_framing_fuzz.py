"""Hostile input to the framing decoders and to unprotect (hypothesis): any bytes, and the
vectors' messages with bytes flipped, inserted or cut, either decode to something that encodes
back to the same bytes or are refused with a RemoteProtocolError (DecodeError, DecryptError,
VerifyError, ...): never another exception."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonet.core.errors import RemoteProtocolError
from sonet.core.mls.codec import DecodeError
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.framing import (
    AuthenticatedContent,
    ContentType,
    MLSMessage,
    PrivateMessage,
    PrivateMessageContent,
    PublicMessage,
    unprotect_private,
    unprotect_public,
)
from sonet.core.mls.key_schedule import GroupContext
from sonet.core.mls.secret_tree import SecretTree
from tests.vectors import load_json

CASE: dict[str, Any] = load_json("mls/message-protection.json")[0]  # suite 1: fast primitives
SEEDS = [bytes.fromhex(CASE[f]) for f in ("proposal_pub", "proposal_priv", "commit_pub", "commit_priv", "application_priv")]
SEEDS.append(bytes.fromhex(load_json("mls/transcript-hashes.json")[0]["authenticated_content"]))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "cut"]))
        if action == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


def _decodes_canonically_or_refuses(data: bytes, decode: Any) -> Any:
    try:
        value = decode(data)
    except DecodeError:
        return None
    assert value.to_bytes() == data
    return value


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated()))
def test_mls_message_decoder(data: bytes) -> None:
    _decodes_canonically_or_refuses(data, MLSMessage.from_bytes)


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated()))
def test_authenticated_content_decoder(data: bytes) -> None:
    _decodes_canonically_or_refuses(data, AuthenticatedContent.from_bytes)


@FUZZ
@given(st.sampled_from(list(ContentType)), st.binary(max_size=200))
def test_private_message_content_decoder(content_type: ContentType, data: bytes) -> None:
    try:
        inner = PrivateMessageContent.from_bytes(data, content_type)
    except DecodeError:
        return
    assert inner.to_bytes() == data


SUITE = cipher_suite(CASE["cipher_suite"])
CONTEXT = GroupContext(
    CASE["cipher_suite"],
    bytes.fromhex(CASE["group_id"]),
    CASE["epoch"],
    bytes.fromhex(CASE["tree_hash"]),
    bytes.fromhex(CASE["confirmed_transcript_hash"]),
)


def _key(sender: object) -> bytes:
    return bytes.fromhex(CASE["signature_pub"])


@FUZZ
@given(mutated())
def test_unprotect_refuses_damaged_messages_cleanly(data: bytes) -> None:
    message = _decodes_canonically_or_refuses(data, MLSMessage.from_bytes)
    if message is None:
        return
    body = message.body
    try:
        if isinstance(body, PrivateMessage):
            tree = SecretTree(SUITE, bytes.fromhex(CASE["encryption_secret"]), 2)
            unprotect_private(SUITE, body, CONTEXT, tree, bytes.fromhex(CASE["sender_data_secret"]), _key)
        elif isinstance(body, PublicMessage):
            unprotect_public(SUITE, body, CONTEXT, bytes.fromhex(CASE["membership_key"]), _key)
    except RemoteProtocolError:
        return
    # it passed every check: only a change the checks do not cover can do that (none is known)
    assert data in SEEDS, "a damaged message was accepted"
