"""The presence content type (core/content.py): ``{presence: "online" | "offline"}``, strict."""

from __future__ import annotations

from typing import Any

import pytest

from sonet.core import canonical
from sonet.core.content import PRESENCE_STATES, Content, decode_content, encode_content
from sonet.core.errors import LocalProtocolError, RemoteProtocolError

ID, SENT = bytes(range(16)), 1_700_000_000_000


def presence(**changes: Any) -> bytes:
    value: dict[str, Any] = {"v": 1, "type": "presence", "id": ID, "sent_at": SENT, "presence": "online"}
    value.update(changes)
    return canonical.dumps({k: v for k, v in value.items() if v is not None})


@pytest.mark.parametrize("state", PRESENCE_STATES)
def test_each_state_round_trips(state: str) -> None:
    content = Content.make_presence(id=ID, sent_at=SENT, presence=state)
    assert decode_content(encode_content(content)) == content
    assert decode_content(presence(presence=state)).presence == state


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"presence": "away"}, "unknown presence 'away'"),
        ({"presence": "Online"}, "unknown presence"),
        ({"presence": ""}, "unknown presence"),
        ({"presence": b"online"}, "must be str"),
        ({"presence": None}, "wrong fields"),  # missing
        ({"typing": "started"}, "wrong fields"),  # a field of another type
        ({"text": "online"}, "wrong fields"),
        ({"id": bytes(15)}, "16 bytes"),
        ({"sent_at": -1}, "sent_at"),
    ],
)
def test_malformed_presence_is_refused(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_content(presence(**changes))
    assert info.value.code == "content_malformed" and words in str(info.value)


def test_oversized_content_is_refused_before_decoding() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_content(presence(presence="x" * 70_000))
    assert info.value.code == "content_malformed"


def test_a_presence_this_device_would_send_must_be_valid() -> None:
    with pytest.raises(LocalProtocolError):
        encode_content(Content.make_presence(id=ID, sent_at=SENT, presence="busy"))
    with pytest.raises(LocalProtocolError):
        encode_content(Content(type="presence", id=ID, sent_at=SENT, presence="online", typing="started"))
