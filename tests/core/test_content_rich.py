"""Issue 17 item 6 content types (core/content.py with core/cards.py, core/poll.py,
core/call.py): round trips, syncs, and what a strict decoder refuses."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from sonet.core import canonical, limits
from sonet.core.call import MAX_SDP_BYTES, CallSignal
from sonet.core.cards import MAX_CARD_ADDRESSES, ContactCard, Event, Location, parse_degrees
from sonet.core.content import CALL, EXPIRING, SYNCABLE, Content, decode_content, encode_content
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.poll import MAX_POLL_OPTIONS, Poll

ID, OTHER = bytes(range(16)), bytes(range(1, 17))
AT = 1_700_000_000_000
POLL = Poll(question="Lunch?", options=("pizza", "sushi", "salad"))
LOCATION = Location(lat=525_200_000, lon=134_050_000, accuracy=15, label="Brandenburger Tor")
CARD = ContactCard(name="Carol", addresses=("carol@gamma", "carol@delta"))
EVENT = Event(title="Standup", start=AT + 3_600_000, end=AT + 4_500_000, place="Room 1")
OFFER = CallSignal(call=OTHER, signal="offer", data="v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n")

MESSAGES = [
    Content.make_poll(id=ID, sent_at=AT, poll=POLL),
    Content.make_poll(id=ID, sent_at=AT, poll=Poll(question="Days?", options=("mo", "tu"), multiple=True)),
    Content.make_vote(id=ID, sent_at=AT, refers_to=OTHER, option=2),
    Content.make_vote(id=ID, sent_at=AT, refers_to=OTHER, option=0, remove=True),
    Content.make_poll_close(id=ID, sent_at=AT, refers_to=OTHER),
    Content.make_location(id=ID, sent_at=AT, location=LOCATION),
    Content.make_location(id=ID, sent_at=AT, location=Location(lat=-90 * 10**7, lon=180 * 10**7)),
    Content.make_contact(id=ID, sent_at=AT, contact=CARD),
    Content.make_event(id=ID, sent_at=AT, event=EVENT),
    Content.make_event(id=ID, sent_at=AT, event=Event(title="Open end", start=AT)),
    Content.make_call(id=ID, sent_at=AT, call=OFFER),
    Content.make_call(id=ID, sent_at=AT, call=CallSignal(call=OTHER, signal="ice", data="")),
    Content.make_call(id=ID, sent_at=AT, call=CallSignal(call=OTHER, signal="hangup", data="busy")),
]


def _raw(**fields: Any) -> bytes:
    return canonical.dumps({"v": 1, "id": ID, "sent_at": AT, **fields})


def _refused(raw: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as info:
        decode_content(raw)
    assert info.value.code == "content_malformed"


@pytest.mark.parametrize("content", MESSAGES, ids=lambda c: c.type)
def test_round_trip_is_canonical(content: Content) -> None:
    raw = encode_content(content)
    assert raw == canonical.dumps(canonical.loads(raw))
    assert decode_content(raw) == content


@pytest.mark.parametrize("content", [m for m in MESSAGES if m.type != CALL], ids=lambda c: c.type)
def test_everything_one_writes_syncs_and_may_expire(content: Content) -> None:
    assert content.type in SYNCABLE and content.type in EXPIRING
    sync = decode_content(encode_content(Content.make_sync_of(content, to="bob@beta")))
    assert sync.message() == content
    timed = Content(**{**{f: getattr(content, f) for f in content.__slots__}, "expires": AT + 5000})  # type: ignore[attr-defined]
    assert decode_content(encode_content(timed)).expires == AT + 5000


def test_a_call_signal_is_never_synced() -> None:
    with pytest.raises(LocalProtocolError):
        encode_content(Content.make_sync_of(MESSAGES[-3], to="bob@beta"))
    inner = encode_content(MESSAGES[-3])
    _refused(_raw(type="sync", to="bob@beta", inner=inner), "a sync carries")


def test_degrees_parse_exactly() -> None:
    assert parse_degrees("52.52", limit=90) == 525_200_000
    assert parse_degrees("-0.0000001", limit=90) == -1
    assert Location(lat=525_200_000, lon=-1).degrees() == ("52.52", "-1E-7")
    for bad in ("north", "nan", "inf", "90.1", ""):
        with pytest.raises(LocalProtocolError, match="degrees") as info:
            parse_degrees(bad, limit=90)
        assert info.value.code == "bad_input"


def _poll(**over: Any) -> dict[str, Any]:
    return {"question": "Q?", "options": ["a", "b"], "multiple": False, **over}


@pytest.mark.parametrize(
    ("poll", "match"),
    [
        (_poll(options=["a"]), "2..10 options"),
        (_poll(options=[str(i) for i in range(MAX_POLL_OPTIONS + 1)]), "2..10 options"),
        (_poll(options=["a", "a"]), "options repeat"),
        (_poll(options=["a", ""]), "an option is 1..128"),
        (_poll(options=["a", "x" * 129]), "an option is 1..128"),
        (_poll(options=["a", 1]), "an option is a string"),
        (_poll(options=["a", "b\nc"]), "line-break"),
        (_poll(question=""), "a question is 1..512"),
        (_poll(question="\u202eevil"), "formatting"),
        (_poll(multiple=1), "'multiple' must be bool"),
        ({"question": "Q?", "options": ["a", "b"]}, "exactly the fields"),
        ({**_poll(), "extra": 1}, "exactly the fields"),
        (["Q?", ["a", "b"], False], "'poll' must be dict"),
    ],
)
def test_malformed_polls_are_refused(poll: Any, match: str) -> None:
    _refused(_raw(type="poll", poll=poll), match)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"refers_to": OTHER, "option": MAX_POLL_OPTIONS, "remove": False}, "option is 0..9"),
        ({"refers_to": OTHER, "option": -1, "remove": False}, "option is 0..9"),
        ({"refers_to": OTHER, "option": True, "remove": False}, "'option' must be int"),
        ({"refers_to": ID, "option": 0, "remove": False}, "refer to itself"),
        ({"refers_to": OTHER[:8], "option": 0, "remove": False}, "refers_to must be"),
        ({"refers_to": OTHER, "option": 0}, "wrong fields"),
    ],
)
def test_malformed_votes_are_refused(fields: dict[str, Any], match: str) -> None:
    _refused(_raw(type="vote", **fields), match)


def test_a_close_refers_to_a_poll_and_nothing_else() -> None:
    _refused(_raw(type="poll_close", refers_to=OTHER, option=0), "wrong fields")
    _refused(_raw(type="poll_close"), "wrong fields")


def _loc(**over: Any) -> dict[str, Any]:
    return {"lat": 0, "lon": 0, "accuracy": 0, "label": "", **over}


@pytest.mark.parametrize(
    ("location", "match"),
    [
        (_loc(lat=90 * 10**7 + 1), "latitude"),
        (_loc(lon=-180 * 10**7 - 1), "longitude"),
        (_loc(accuracy=-1), "accuracy"),
        (_loc(label="x" * 257), "a label is 0..256"),
        (_loc(label="a\x00b"), "control"),
        (_loc(lat=1.5), "not allowed"),  # canonical CBOR has no floats: refused before any field is read
    ],
)
def test_malformed_locations_are_refused(location: dict[str, Any], match: str) -> None:
    _refused(_raw(type="location", location=location), match)


@pytest.mark.parametrize(
    ("card", "match"),
    [
        ({"name": "C", "addresses": []}, "1..8 addresses"),
        ({"name": "C", "addresses": [f"u{i}@n" for i in range(MAX_CARD_ADDRESSES + 1)]}, "1..8 addresses"),
        ({"name": "C", "addresses": ["Carol@Gamma"]}, "normal form"),
        ({"name": "C", "addresses": ["no-at-sign"]}, "contact card"),
        ({"name": "C", "addresses": ["c@g", "c@g"]}, "repeat"),
        ({"name": "x" * 129, "addresses": ["c@g"]}, "a name is 0..128"),
        ({"name": "C", "addresses": [b"c@g"]}, "an address is a string"),
    ],
)
def test_malformed_cards_are_refused(card: dict[str, Any], match: str) -> None:
    _refused(_raw(type="contact", contact=card), match)


@pytest.mark.parametrize(
    ("event", "match"),
    [
        ({"title": "", "start": AT, "end": 0, "place": ""}, "a title is 1..256"),
        ({"title": "T", "start": AT, "end": AT - 1, "place": ""}, "end is 0"),
        ({"title": "T", "start": -1, "end": 0, "place": ""}, "start out of range"),
        ({"title": "T", "start": 2**53, "end": 0, "place": ""}, "start out of range"),
        ({"title": "T", "start": AT, "end": 0, "place": "a\nb"}, "line-break"),
    ],
)
def test_malformed_events_are_refused(event: dict[str, Any], match: str) -> None:
    _refused(_raw(type="event", event=event), match)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        ({"call": OTHER[:15], "signal": "offer", "data": "v=0"}, "call id is 16"),
        ({"call": OTHER, "signal": "ring", "data": ""}, "unknown signal"),
        ({"call": OTHER, "signal": "offer", "data": ""}, "session description is 1.."),
        ({"call": OTHER, "signal": "answer", "data": "x" * (MAX_SDP_BYTES + 1)}, "session description is 1.."),
        ({"call": OTHER, "signal": "offer", "data": "v=0\x00"}, "NUL"),
        ({"call": OTHER, "signal": "ice", "data": "candidate\n2"}, "line-break"),
        ({"call": OTHER, "signal": "hangup", "data": "because"}, "reason is one of"),
    ],
)
def test_malformed_call_signals_are_refused(call: dict[str, Any], match: str) -> None:
    _refused(_raw(type="call", call=call), match)


def test_every_nested_map_must_be_canonical() -> None:
    """A nested map out of canonical key order is refused (one byte string per content)."""
    body = {"v": 1, "id": ID, "type": "poll", "sent_at": AT, "poll": {"options": ["a", "b"], "question": "Q?", "multiple": False}}
    with pytest.raises(RemoteProtocolError, match="canonical|order"):
        decode_content(cbor2.dumps(body))
    assert decode_content(_raw(type="poll", poll=_poll())).poll == Poll(question="Q?", options=("a", "b"))


def test_encoding_refuses_what_decoding_would() -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode_content(Content.make_poll(id=ID, sent_at=AT, poll=Poll(question="Q?", options=("only",))))
    assert "2..10 options" in str(info.value)
    with pytest.raises(LocalProtocolError):
        encode_content(Content(type="vote", id=ID, sent_at=AT, refers_to=OTHER, option=0, remove=False, emoji="x"))
    with pytest.raises(LocalProtocolError):
        encode_content(Content.make_text(id=ID, sent_at=AT, text="t").__class__(type="text", id=ID, sent_at=AT, text="t", poll=POLL))


def test_the_largest_poll_fits_a_content_object() -> None:
    poll = Poll(question="q" * 512, options=tuple(f"{i:03d}" + "o" * 124 for i in range(MAX_POLL_OPTIONS)), multiple=True)
    content = Content.make_poll(id=ID, sent_at=AT, poll=poll)
    sync = Content.make_sync_of(Content(**{**{f: getattr(content, f) for f in content.__slots__}, "expires": AT + 1}), to="b@n")  # type: ignore[attr-defined]
    assert len(encode_content(sync)) <= limits.MAX_CONTENT_BYTES
