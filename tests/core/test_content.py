"""Message content (core.content): every type round-trips; every malformed variant is refused."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sonet.core import canonical, limits
from sonet.core.attachment import FileRef
from sonet.core.call import CallSignal
from sonet.core.cards import ContactCard, Event, Location
from sonet.core.poll import Poll
from sonet.core.content import CONTENT_TYPES, MAX_GROUP_NAME_LEN, MAX_GROUP_TOPIC_LEN, Content, decode_content, encode_content
from sonet.core.errors import LocalProtocolError, RemoteProtocolError

ID = bytes(range(16))
OTHER = bytes(range(16, 32))
SENT = 1_700_000_000_000

SAMPLES = {
    "text": Content.make_text(id=ID, sent_at=SENT, text="hello, Bob ✓"),
    "receipt-delivered": Content.make_receipt(id=ID, sent_at=SENT, receipt="delivered", ids=[OTHER]),
    "receipt-read": Content.make_receipt(id=ID, sent_at=SENT, receipt="read", ids=(OTHER, ID)),
    "typing-started": Content.make_typing(id=ID, sent_at=SENT, typing="started"),
    "typing-stopped": Content.make_typing(id=ID, sent_at=0, typing="stopped"),
    # presence (more cases: tests/core/test_content_presence.py)
    "presence": Content.make_presence(id=ID, sent_at=SENT, presence="online"),
    "sync": Content.make_sync(id=ID, sent_at=SENT, to="bob@beta.example", text="sent from my phone"),
    "alert": Content.make_alert(id=ID, sent_at=SENT, text="device 3 was added to your account"),
    "group_state": Content.make_group_state(id=ID, sent_at=SENT, name="Hiking ⛰", topic="Sunday, 9:00"),
    "group_state-no-topic": Content.make_group_state(id=ID, sent_at=SENT, name="x", topic=""),
    # disappearing messages (more cases: tests/core/test_content_timer.py)
    "timer": Content.make_timer(id=ID, sent_at=SENT, timer=3_600_000),
    "group_typing": Content.make_group_typing(id=ID, sent_at=SENT, typing="stopped", group=OTHER),
    # issue 17 gestures (more cases: tests/core/test_content_gestures.py)
    "reply": Content.make_reply(id=ID, sent_at=SENT, text="me too", refers_to=OTHER),
    "reaction": Content.make_reaction(id=ID, sent_at=SENT, refers_to=OTHER, emoji="👍"),
    "edit": Content.make_edit(id=ID, sent_at=SENT, refers_to=OTHER, text="hello, Bob!"),
    "delete": Content.make_delete(id=ID, sent_at=SENT, refers_to=OTHER),
    # attachments (more cases: tests/core/test_content_file.py)
    "file": Content.make_file(id=ID, sent_at=SENT, file=FileRef(
        node="alpha.example", blob=OTHER, key=bytes(32), sha256=bytes(32), sealed_sha256=bytes(32), size=3, media_type="", name="a.txt",
    ), text="see attached"),  # fmt: skip
    # issue 17 item 6 (more cases: tests/core/test_content_rich.py)
    "location": Content.make_location(id=ID, sent_at=SENT, location=Location(lat=525_200_000, lon=134_050_000, label="Berlin")),
    "contact": Content.make_contact(id=ID, sent_at=SENT, contact=ContactCard(name="Carol", addresses=("carol@gamma.example",))),
    "event": Content.make_event(id=ID, sent_at=SENT, event=Event(title="Standup", start=SENT, end=0, place="")),
    "poll": Content.make_poll(id=ID, sent_at=SENT, poll=Poll(question="Lunch?", options=("pizza", "sushi"))),
    "vote": Content.make_vote(id=ID, sent_at=SENT, refers_to=OTHER, option=1),
    "poll_close": Content.make_poll_close(id=ID, sent_at=SENT, refers_to=OTHER),
    "call": Content.make_call(id=ID, sent_at=SENT, call=CallSignal(call=OTHER, signal="hangup", data="ended")),
}


def fields(kind: str = "text", **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"v": 1, "type": kind, "id": ID, "sent_at": SENT}
    base.update(
        {
            "text": {"text": "hi"},
            "receipt": {"receipt": "read", "ids": [OTHER]},
            "typing": {"typing": "started"},
            "presence": {"presence": "offline"},
            "sync": {"to": "bob@beta.example", "text": "hi"},
            "alert": {"text": "hi"},
            "group_state": {"name": "hikers", "topic": "Sunday"},
            "timer": {"timer": 5_000},
            "group_typing": {"typing": "started", "group": OTHER},
            "reply": {"text": "hi", "refers_to": OTHER},
            "reaction": {"refers_to": OTHER, "emoji": "👍", "remove": False},
            "edit": {"refers_to": OTHER, "text": "hi"},
            "delete": {"refers_to": OTHER},
            "file": {"text": "", "file": SAMPLES["file"].file.to_map()},  # type: ignore[union-attr]
            **{k: {k: getattr(SAMPLES[k], k).to_map()} for k in ("location", "contact", "event", "poll", "call")},
            "vote": {"refers_to": OTHER, "option": 0, "remove": True},
            "poll_close": {"refers_to": OTHER},
        }[kind]
    )
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def refused(raw: Any) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode_content(raw)
    assert info.value.code == "content_malformed"
    return info.value


@pytest.mark.parametrize("name", SAMPLES)
def test_every_type_round_trips(name: str) -> None:
    content = SAMPLES[name]
    raw = encode_content(content)
    assert decode_content(raw) == content
    value = canonical.loads(raw)
    assert set(value) == set(fields(content.type))  # exactly the fields of its type
    assert (value["v"], value["type"], value["id"], value["sent_at"]) == (1, content.type, ID, content.sent_at)


@pytest.mark.parametrize("name", SAMPLES)
def test_encoding_is_the_canonical_cbor_of_its_fields(name: str) -> None:
    # encode_content builds its map in canonical key order instead of letting cbor2 sort it
    raw = encode_content(SAMPLES[name])
    assert raw == canonical.dumps(canonical.loads(raw)) == canonical.dumps(fields(SAMPLES[name].type, **_changes(SAMPLES[name])))


def _changes(content: Content) -> dict[str, Any]:
    used = fields(content.type)
    return {
        k: list(v) if isinstance(v, tuple) else v.to_map() if hasattr(v, "to_map") else v
        for k in used if (v := getattr(content, k, None)) is not None
    }  # fmt: skip


def test_all_types_are_covered() -> None:
    assert set(CONTENT_TYPES) == {c.type for c in SAMPLES.values()}


def test_hand_built_content_decodes() -> None:
    for kind in CONTENT_TYPES:
        assert decode_content(canonical.dumps(fields(kind))).type == kind


def test_bounds_are_inclusive() -> None:
    text = "x" * limits.MAX_TEXT_LEN
    assert decode_content(encode_content(Content.make_text(id=ID, sent_at=SENT, text=text))).text == text
    assert decode_content(encode_content(Content.make_text(id=ID, sent_at=SENT, text=""))).text == ""
    ids = tuple(i.to_bytes(16, "big") for i in range(limits.MAX_RECEIPT_IDS))
    assert decode_content(encode_content(Content.make_receipt(id=ID, sent_at=SENT, receipt="read", ids=ids))).ids == ids
    sync = Content.make_sync(id=ID, sent_at=2**63 - 1, to="bob@beta.example", text=text)
    assert decode_content(encode_content(sync)) == sync
    state = Content.make_group_state(id=ID, sent_at=SENT, name="n" * MAX_GROUP_NAME_LEN, topic="t" * MAX_GROUP_TOPIC_LEN)
    assert decode_content(encode_content(state)) == state


def test_make_sync_normalises_the_address() -> None:
    assert Content.make_sync(id=ID, sent_at=SENT, to="Bob@Beta.Example", text="x").to == "bob@beta.example"


@settings(max_examples=40, deadline=None)
@given(
    text=st.text(max_size=200),
    sent_at=st.integers(0, 2**63 - 1),
    ids=st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=20, unique=True),
)
def test_round_trip_property(text: str, sent_at: int, ids: list[bytes]) -> None:
    for content in (
        Content.make_text(id=ID, sent_at=sent_at, text=text),
        Content.make_receipt(id=ID, sent_at=sent_at, receipt="delivered", ids=ids),
        Content.make_sync(id=ID, sent_at=sent_at, to="carol@gamma.example", text=text),
    ):
        assert decode_content(encode_content(content)) == content


# Malformed input ---------------------------------------------------------------------------

MALFORMED = {
    "unknown-type": fields(type="image"),
    "type-int": fields(type=1),
    "version-2": fields(v=2),
    "version-0": fields(v=0),
    "id-short": fields(id=ID[:15]),
    "id-long": fields(id=ID + b"\0"),
    "id-str": fields(id="0" * 16),
    "sent-negative": fields(sent_at=-1),
    "sent-huge": fields(sent_at=2**63),
    "sent-str": fields(sent_at="now"),
    "text-int": fields(text=5),
    "text-too-long": fields(text="x" * (limits.MAX_TEXT_LEN + 1)),
    "text-too-many-bytes": fields(text="é" * (limits.MAX_TEXT_LEN // 2 + 1)),
    "text-missing": fields(text=_DROP),
    "text-extra-field": fields(extra=1),
    "text-with-typing": fields(typing="started"),
    "receipt-unknown": fields("receipt", receipt="seen"),
    "receipt-no-ids": fields("receipt", ids=[]),
    "receipt-too-many": fields("receipt", ids=[i.to_bytes(16, "big") for i in range(limits.MAX_RECEIPT_IDS + 1)]),
    "receipt-id-short": fields("receipt", ids=[OTHER[:15]]),
    "receipt-id-str": fields("receipt", ids=["x" * 16]),
    "receipt-duplicate": fields("receipt", ids=[OTHER, OTHER]),
    "receipt-ids-bytes": fields("receipt", ids=OTHER),
    "receipt-missing": fields("receipt", receipt=_DROP),
    "receipt-with-text": fields("receipt", text="hi"),
    "typing-unknown": fields("typing", typing="paused"),
    "typing-bool": fields("typing", typing=True),
    "typing-missing": fields("typing", typing=_DROP),
    "sync-bad-address": fields("sync", to="bob"),
    "sync-not-normalised": fields("sync", to="Bob@beta.example"),
    "sync-missing-to": fields("sync", to=_DROP),
    "sync-missing-text": fields("sync", text=_DROP),
    "sync-text-too-long": fields("sync", text="x" * (limits.MAX_TEXT_LEN + 1)),
    "group_state-empty-name": fields("group_state", name=""),
    "group_state-name-too-long": fields("group_state", name="é" * (MAX_GROUP_NAME_LEN // 2 + 1)),
    "group_state-topic-too-long": fields("group_state", topic="x" * (MAX_GROUP_TOPIC_LEN + 1)),
    "group_state-name-int": fields("group_state", name=1),
    "group_state-missing-topic": fields("group_state", topic=_DROP),
    "group_state-with-text": fields("group_state", text="hi"),
    "text-with-name": fields(name="x"),
    "group_typing-short-group": fields("group_typing", group=OTHER[:15]),
    "group_typing-group-str": fields("group_typing", group="g" * 16),
    "group_typing-missing-group": fields("group_typing", group=_DROP),
    "group_typing-unknown": fields("group_typing", typing="paused"),
    "typing-with-group": fields("typing", group=OTHER),
    "common-missing-id": fields(id=_DROP),
    "common-missing-sent": fields(sent_at=_DROP),
    "common-missing-version": fields(v=_DROP),
    "common-missing-type": fields(type=_DROP),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_content_is_refused(name: str) -> None:
    refused(canonical.dumps(MALFORMED[name]))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage",
        canonical.dumps(["text", "hi"]),
        canonical.dumps("text"),
        canonical.dumps(fields()) + b"\0",
        cbor2.dumps(dict(reversed(list(fields().items())))),
        b"\0" * (limits.MAX_CONTENT_BYTES + 1),
        "not bytes",
    ],
    ids=["empty", "garbage", "list", "str", "trailing", "non-canonical", "too-large", "str-input"],
)
def test_undecodable_content_is_refused(raw: Any) -> None:
    refused(raw)


@pytest.mark.parametrize(
    "content",
    [
        Content(type="image", id=ID, sent_at=SENT),
        Content(type="text", id=ID, sent_at=SENT),
        Content(type="text", id=ID[:8], sent_at=SENT, text="hi"),
        Content(type="text", id=ID, sent_at=-1, text="hi"),
        Content(type="text", id=ID, sent_at=SENT, text="x" * (limits.MAX_TEXT_LEN + 1)),
        Content(type="text", id=ID, sent_at=SENT, text="hi", typing="started"),
        Content(type="receipt", id=ID, sent_at=SENT, receipt="read", ids=()),
        Content(type="receipt", id=ID, sent_at=SENT, receipt="lost", ids=(OTHER,)),
        Content(type="typing", id=ID, sent_at=SENT, typing="maybe"),
        Content(type="sync", id=ID, sent_at=SENT, to="bob", text="hi"),
        Content(type="group_state", id=ID, sent_at=SENT, name="", topic=""),
        Content(type="group_state", id=ID, sent_at=SENT, name="x"),
        Content(type="text", id=ID, sent_at=SENT, text="hi", topic="x"),
    ],
    ids=["unknown-type", "missing-text", "id", "sent", "text-long", "stray-field", "no-ids", "receipt", "typing", "sync-to",
         "group-name-empty", "group-no-topic", "text-with-topic"],
)
def test_encode_refuses_invalid_content(content: Content) -> None:
    with pytest.raises(LocalProtocolError):
        encode_content(content)


def test_encode_takes_only_content() -> None:
    with pytest.raises(LocalProtocolError):
        encode_content(fields())  # type: ignore[arg-type]
