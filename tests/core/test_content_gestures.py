"""Issue 17 gestures in core.content: reply, reaction, edit, delete and the sync that carries
them to one's other devices; strict decode with caps, forged and malformed variants refused."""

from __future__ import annotations

from typing import Any

import pytest

from sonet.core import canonical, limits
from sonet.core.content import (
    MAX_EMOJI_BYTES,
    MAX_EMOJI_CODEPOINTS,
    Content,
    decode_content,
    emoji_problem,
    encode_content,
)
from sonet.core.errors import LocalProtocolError, RemoteProtocolError

ID = bytes(range(16))
OTHER = bytes(range(16, 32))
SENT = 1_700_000_000_000


def refused(value: Any) -> str:
    with pytest.raises(RemoteProtocolError) as info:
        decode_content(value if isinstance(value, bytes) else canonical.dumps(value))
    assert info.value.code == "content_malformed"
    return str(info.value)


def base(kind: str, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "type": kind, "id": ID, "sent_at": SENT, **fields}


@pytest.mark.parametrize(
    "emoji", ["👍", "❤️", "👍🏽", "🇫🇷", "1️⃣", "👨‍👩‍👧‍👦", "👨🏻‍👩🏻‍👧🏻‍👦🏻", "ok", "+1"],
)
def test_reactions_round_trip(emoji: str) -> None:
    for remove in (False, True):
        content = Content.make_reaction(id=ID, sent_at=SENT, refers_to=OTHER, emoji=emoji, remove=remove)
        assert decode_content(encode_content(content)) == content


@pytest.mark.parametrize(
    "emoji", ["", " ", "👍 👍", "a\nb", "\u202e👍", "\u200b", "x" * (MAX_EMOJI_CODEPOINTS + 1), "👍" * (MAX_EMOJI_BYTES // 4 + 1), "\x1b[31m"],
    ids=["empty", "space", "two-words", "newline", "bidi-override", "zero-width-space", "too-many-codepoints", "too-many-bytes", "escape"],
)
def test_bad_emoji_is_refused_both_ways(emoji: str) -> None:
    assert emoji_problem(emoji) is not None
    refused(base("reaction", refers_to=OTHER, emoji=emoji, remove=False))
    with pytest.raises(LocalProtocolError):
        encode_content(Content.make_reaction(id=ID, sent_at=SENT, refers_to=OTHER, emoji=emoji))


def test_reply_edit_delete_round_trip_at_their_bounds() -> None:
    text = "é" * (limits.MAX_TEXT_LEN // 2)
    for content in (
        Content.make_reply(id=ID, sent_at=SENT, text=text, refers_to=OTHER),
        Content.make_edit(id=ID, sent_at=SENT, refers_to=OTHER, text=text),
        Content.make_delete(id=ID, sent_at=2**63 - 1, refers_to=OTHER),
    ):
        assert decode_content(encode_content(content)) == content
        # and its copy for one's other devices still fits a content object
        sync = Content.make_sync_of(content, to="bob@beta.example")
        assert len(encode_content(sync)) <= limits.MAX_CONTENT_BYTES and decode_content(encode_content(sync)) == sync


MALFORMED = {
    "reply-no-refers": base("reply", text="hi"),
    "reply-refers-short": base("reply", text="hi", refers_to=OTHER[:15]),
    "reply-refers-str": base("reply", text="hi", refers_to=OTHER.hex()),
    "reply-text-too-long": base("reply", text="x" * (limits.MAX_TEXT_LEN + 1), refers_to=OTHER),
    "reply-to-itself": base("reply", text="hi", refers_to=ID),
    "reaction-remove-int": base("reaction", refers_to=OTHER, emoji="👍", remove=0),
    "reaction-no-remove": base("reaction", refers_to=OTHER, emoji="👍"),
    "reaction-with-text": base("reaction", refers_to=OTHER, emoji="👍", remove=False, text="x"),
    "edit-no-text": base("edit", refers_to=OTHER),
    "edit-refers-long": base("edit", refers_to=OTHER + b"\0", text="x"),
    "edit-itself": base("edit", refers_to=ID, text="x"),
    "delete-with-text": base("delete", refers_to=OTHER, text=""),
    "delete-no-refers": base("delete"),
    "text-with-refers": base("text", text="hi", refers_to=OTHER),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_gestures_are_refused(name: str) -> None:
    refused(MALFORMED[name])


# The sync of a gesture ---------------------------------------------------------------------


def test_a_sync_carries_every_syncable_message_and_texts_keep_the_old_form() -> None:
    for inner in (
        Content.make_reply(id=ID, sent_at=SENT, text="me too", refers_to=OTHER),
        Content.make_reaction(id=ID, sent_at=SENT, refers_to=OTHER, emoji="🎉", remove=True),
        Content.make_edit(id=ID, sent_at=SENT, refers_to=OTHER, text="fixed"),
        Content.make_delete(id=ID, sent_at=SENT, refers_to=OTHER),
    ):
        sync = Content.make_sync_of(inner, to="Bob@Beta.Example")
        decoded = decode_content(encode_content(sync))
        assert decoded == sync and decoded.to == "bob@beta.example" and decoded.message() == inner
    text = Content.make_text(id=ID, sent_at=SENT, text="hi")
    old_form = Content.make_sync_of(text, to="bob@beta.example")
    assert set(canonical.loads(encode_content(old_form))) == {"v", "type", "id", "sent_at", "to", "text"}
    assert decode_content(encode_content(old_form)).message() == text


def _inner(**changes: Any) -> bytes:
    return canonical.dumps({**base("delete", refers_to=OTHER), **changes})


SYNC_MALFORMED = {
    "inner-other-id": base("sync", to="bob@beta.example", inner=_inner(id=OTHER, refers_to=ID)),
    "inner-other-time": base("sync", to="bob@beta.example", inner=_inner(sent_at=SENT + 1)),
    "inner-is-sync": base("sync", to="bob@beta.example", inner=canonical.dumps(base("sync", to="bob@beta.example", text="x"))),
    "inner-is-receipt": base("sync", to="bob@beta.example", inner=canonical.dumps(base("receipt", receipt="read", ids=[OTHER]))),
    "inner-is-group-state": base("sync", to="bob@beta.example", inner=canonical.dumps(base("group_state", name="x", topic=""))),
    "inner-malformed": base("sync", to="bob@beta.example", inner=_inner(refers_to=b"short")),
    "inner-garbage": base("sync", to="bob@beta.example", inner=b"\xff\x00"),
    "inner-and-text": base("sync", to="bob@beta.example", inner=_inner(), text="x"),
    "inner-no-to": base("sync", inner=_inner()),
    "inner-str": base("sync", to="bob@beta.example", inner="delete"),
}


@pytest.mark.parametrize("name", SYNC_MALFORMED)
def test_malformed_syncs_are_refused(name: str) -> None:
    refused(SYNC_MALFORMED[name])


def test_a_sync_cannot_be_encoded_with_a_text_and_an_inner() -> None:
    inner = Content.make_delete(id=ID, sent_at=SENT, refers_to=OTHER)
    with pytest.raises(LocalProtocolError):
        encode_content(Content(type="sync", id=ID, sent_at=SENT, to="bob@beta.example", text="x", inner=inner))
