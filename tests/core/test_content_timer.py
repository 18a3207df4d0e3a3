"""Disappearing messages in content (core/content.py ``timer``, ``expires``) and durations
(core/timer.py): round trips, and what a strict decoder refuses."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sonet.core import canonical
from sonet.core.content import EXPIRING, SYNCABLE, TIMER, Content, decode_content, encode_content
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.timer import MAX_TIMER_MS, MIN_TIMER_MS, expiry_of, format_duration, parse_duration, timer_problem, wake_delay_s

ID, OTHER = bytes(range(16)), bytes(range(1, 17))
AT = 1_700_000_000_000


def _raw(**fields: Any) -> bytes:
    return canonical.dumps({"v": 1, "id": ID, "sent_at": AT, **fields})


def _refused(raw: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as info:
        decode_content(raw)
    assert info.value.code == "content_malformed"


@pytest.mark.parametrize("timer", [0, MIN_TIMER_MS, 3_600_000, MAX_TIMER_MS])
def test_a_timer_round_trips(timer: int) -> None:
    content = Content.make_timer(id=ID, sent_at=AT, timer=timer)
    assert decode_content(encode_content(content)) == content


@pytest.mark.parametrize(
    "message",
    [
        Content.make_text(id=ID, sent_at=AT, text="gone soon"),
        Content.make_reply(id=ID, sent_at=AT, text="also", refers_to=OTHER),
        Content.make_reaction(id=ID, sent_at=AT, refers_to=OTHER, emoji="👍"),
        Content.make_edit(id=ID, sent_at=AT, refers_to=OTHER, text="edited"),
        Content.make_delete(id=ID, sent_at=AT, refers_to=OTHER),
    ],
)
def test_every_message_one_writes_carries_its_expiry_and_so_does_its_sync(message: Content) -> None:
    timed = replace(message, expires=AT + 5_000)
    assert decode_content(encode_content(timed)) == timed
    assert decode_content(encode_content(message)).expires is None  # no timer: no field
    sync = decode_content(encode_content(Content.make_sync_of(timed, to="alice@alpha.example")))
    assert sync.inner == timed  # the text form cannot say when: a timed text goes in the inner form


def test_the_timer_is_synced_to_ones_other_devices_and_never_expires_itself() -> None:
    assert TIMER in SYNCABLE and TIMER not in EXPIRING
    timer = Content.make_timer(id=ID, sent_at=AT, timer=5_000)
    assert decode_content(encode_content(Content.make_sync_of(timer, to="bob@beta.example"))).inner == timer
    with pytest.raises(LocalProtocolError, match="no field 'expires'"):
        encode_content(replace(timer, expires=AT + 5_000))


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"type": "timer", "timer": 5}, "a timer is off or"),
        ({"type": "timer", "timer": MAX_TIMER_MS + 1}, "a timer is off or"),
        ({"type": "timer", "timer": -1000}, "a timer is off or"),
        ({"type": "timer", "timer": True}, "field 'timer' must be int"),
        ({"type": "timer", "timer": "1h"}, "field 'timer' must be int"),
        ({"type": "timer"}, "wrong fields"),
        ({"type": "timer", "timer": 5000, "expires": AT + 1}, "wrong fields"),
        ({"type": "text", "text": "x", "expires": AT}, "expires must be after sent_at"),
        ({"type": "text", "text": "x", "expires": AT - 1}, "expires must be after sent_at"),
        ({"type": "text", "text": "x", "expires": AT + MAX_TIMER_MS + 1}, "expires must be after sent_at"),
        ({"type": "text", "text": "x", "expires": 2**70}, "not allowed"),  # a bignum: refused by the CBOR decoder
        ({"type": "text", "text": "x", "expires": "soon"}, "field 'expires' must be int"),
        ({"type": "receipt", "receipt": "read", "ids": [OTHER], "expires": AT + 1}, "wrong fields"),
        ({"type": "typing", "typing": "started", "expires": AT + 1}, "wrong fields"),
        ({"type": "sync", "to": "bob@beta.example", "text": "x", "expires": AT + 1}, "wrong fields"),
    ],
)
def test_malformed_timers_and_expiries_are_refused(fields: dict, match: str) -> None:
    _refused(_raw(**fields), match)


def test_a_forged_sync_carrying_a_timed_message_with_another_expiry_is_still_checked() -> None:
    inner = canonical.dumps({"v": 1, "id": ID, "sent_at": AT, "type": "text", "text": "x", "expires": AT})
    _refused(_raw(type="sync", to="bob@beta.example", inner=inner), "expires must be after sent_at")


@pytest.mark.parametrize(("text", "ms"), [("5s", 5_000), ("10m", 600_000), ("1h", 3_600_000), ("7d", 604_800_000), ("2w", 1_209_600_000), ("off", 0), (" OFF ", 0), ("30d", MAX_TIMER_MS)])
def test_durations_parse(text: str, ms: int) -> None:
    assert parse_duration(text) == ms
    assert parse_duration(format_duration(ms)) == ms


@pytest.mark.parametrize("text", ["", "5", "s", "0s", "-5s", "5 s", "1.5h", "5sec", "31d", "500ms", "05s", "1h30m", "99999999999s"])
def test_bad_durations_are_refused_with_one_clear_line(text: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        parse_duration(text)
    assert info.value.code == "bad_timer" and "\n" not in str(info.value)


def test_what_a_timer_makes_of_a_message() -> None:
    assert expiry_of(AT, 5_000) == AT + 5_000 and expiry_of(AT, 0) is None
    assert timer_problem(0) is None and timer_problem(999) is not None
    assert format_duration(90_000) == "90s" and format_duration(3_600_000) == "1h"


def test_the_wake_delay_is_the_earliest_expiry_bounded() -> None:
    assert wake_delay_s(1_000, [None, 4_000, 3_500], longest_s=60) == 2.5
    assert wake_delay_s(1_000, [90_000], longest_s=1) == 1
    assert wake_delay_s(1_000, [500], longest_s=1) == 0  # overdue: at once
    assert wake_delay_s(1_000, [None], longest_s=1) == 1
