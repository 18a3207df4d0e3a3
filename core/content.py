"""Message content: the plaintext inside one ratchet message.

``content = CBOR{v: 1, type, id (16 bytes), sent_at (ms), ...}`` with exactly the fields of its
type:

- ``text``     ``{text}``
- ``receipt``  ``{receipt: "delivered" | "read" | "undelivered", ids: [16-byte content ids]}``
  (1..MAX_RECEIPT_IDS, unique); ``undelivered``: the recipient refused them because the account
  removed the sending device before the recipient's node took them (client/receiving.py)
- ``typing``   ``{typing: "started" | "stopped"}``
- ``presence`` ``{presence: "online" | "offline"}`` — opt-in presence (client/presence.py), sent
  ephemeral to the contacts the user allows; ``sent_at`` of an ``offline`` is the last seen time.
- ``group_typing`` ``{typing: "started" | "stopped", group: 16-byte group id}`` — typing in a
  group, sent 1:1 (ephemeral, sealed sender) to the members' devices (docs/groups.md); a device
  takes it only from a member of a group it is in.
- ``sync``     ``{to: address, text}`` — a copy of one's own outgoing text for one's other
  devices; ``id`` and ``sent_at`` are those of the original, so every device dedupes alike.
  Or ``{to: address, inner: bytes}``: the copy of any message one writes (``SYNCABLE``: a text,
  reply, reaction, edit or delete), ``inner`` its encoded content with the same ``id`` and
  ``sent_at`` (an older device refuses this form; the text form stays for texts).
- ``reply``    ``{text, refers_to: 16-byte content id}`` — a text quoting another message of the
  conversation; a reply to a reply continues its thread.
- ``reaction`` ``{refers_to, emoji, remove: bool}`` — add (or take back) one emoji on a message:
  1..``MAX_EMOJI_CODEPOINTS`` code points, at most ``MAX_EMOJI_BYTES`` bytes, no whitespace,
  control or bidi formatting characters (a zero-width joiner inside a sequence is fine).
- ``edit``     ``{refers_to, text}`` — the new text of one of the sender's own messages.
- ``delete``   ``{refers_to}`` — delete for everyone: one of the sender's own messages, within
  ``DELETE_WINDOW_MS`` of it (receivers check who wrote it and when: client/gestures.py).
- ``file``     ``{file: map, text}`` — an attachment (core/attachment.py ``FileRef``: where its
  encrypted blob lies, its key and digests, size, media type, name) with a caption (may be empty).
- ``alert``    ``{text}`` — what one's own device found wrong in the account's key-directory
  entries (client/monitor.py), for one's other devices.
- ``group_state`` ``{name, topic}`` — a group's name and topic, sent by an admin as a group
  application message (docs/groups.md); members keep the latest one. The name is 1..
  ``MAX_GROUP_NAME_LEN`` bytes of UTF-8, the topic at most ``MAX_GROUP_TOPIC_LEN``.

Issue 17 item 6 (each a nested map, checked by its own module):

- ``location`` ``{location: map}`` (core/cards.py ``Location``: lat/lon in 1e-7 degrees, accuracy, label)
- ``contact``  ``{contact: map}`` (core/cards.py ``ContactCard``: a name and 1..8 addresses)
- ``event``    ``{event: map}`` (core/cards.py ``Event``: title, start, end, place)
- ``poll``     ``{poll: map}`` (core/poll.py ``Poll``: question, 2..10 options, multiple)
- ``vote``     ``{refers_to, option: int, remove: bool}`` — choose (or take back) option
  ``option`` (0-based) of the poll ``refers_to`` names, as a reaction names a message
- ``poll_close`` ``{refers_to}`` — its author ends the poll (core/poll.py ``tally``)
- ``call``     ``{call: map}`` (core/call.py ``CallSignal``: offer / answer / ICE / hang-up), 1:1
  only and never synced or kept in a history

``refers_to`` names a message by its content id, the id ``recv --json`` prints; what a device
does with a message naming one it does not hold is client/gestures.py's business.

Disappearing messages (core/timer.py): ``timer`` ``{timer: ms}`` sets the conversation's timer
(0: off; else ``MIN_TIMER_MS..MAX_TIMER_MS``); either side may, the latest ``sent_at`` wins. While
it is on, every message one writes (``EXPIRING``) carries ``expires`` (ms, after ``sent_at`` by
at most ``MAX_TIMER_MS``): devices erase it then (client/timer.py), and its envelope expires then
on every node. A sync of such a message uses the inner form (the text form has no ``expires``).

Texts are bounded by ``limits.MAX_TEXT_LEN`` bytes of UTF-8. Decoding is strict: unknown type or
version, a missing, extra or mistyped field, a bound exceeded or a non-normalised address is a
``RemoteProtocolError`` (code ``content_malformed``); encoding something invalid is a
``LocalProtocolError``.
"""

from __future__ import annotations

import dataclasses
import operator
import unicodedata
from dataclasses import dataclass
from typing import Any

from . import canonical, limits
from .address import parse_address
from .attachment import FileRef
from .call import CallSignal
from .cards import ContactCard, Event, Location
from .poll import MAX_POLL_OPTIONS, Poll
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .timer import MAX_TIMER_MS, timer_problem

__all__ = [
    "Content",
    "encode_content",
    "decode_content",
    "CONTENT_TYPES",
    "TEXT",
    "RECEIPT",
    "TYPING",
    "SYNC",
    "ALERT",
    "GROUP_STATE",
    "GROUP_TYPING",
    "REPLY",
    "REACTION",
    "EDIT",
    "DELETE",
    "FILE",
    "TIMER",
    "EXPIRING",
    "GESTURES",
    "SYNCABLE",
    "MAX_EMOJI_BYTES",
    "MAX_EMOJI_CODEPOINTS",
    "DELETE_WINDOW_MS",
    "emoji_problem",
    "MAX_GROUP_NAME_LEN",
    "MAX_GROUP_TOPIC_LEN",
    "RECEIPT_KINDS",
    "TYPING_STATES",
    "PRESENCE",
    "PRESENCE_STATES",
    "LOCATION",
    "CONTACT",
    "EVENT",
    "POLL",
    "VOTE",
    "POLL_CLOSE",
    "CALL",
]

TEXT, RECEIPT, TYPING, SYNC, ALERT, GROUP_STATE = "text", "receipt", "typing", "sync", "alert", "group_state"
GROUP_TYPING = "group_typing"
REPLY, REACTION, EDIT, DELETE = "reply", "reaction", "edit", "delete"
TIMER = "timer"
PRESENCE = "presence"
FILE = "file"
LOCATION, CONTACT, EVENT, POLL, VOTE, POLL_CLOSE, CALL = "location", "contact", "event", "poll", "vote", "poll_close", "call"
CONTENT_TYPES = (TEXT, RECEIPT, TYPING, SYNC, ALERT, GROUP_STATE, GROUP_TYPING, REPLY, REACTION, EDIT, DELETE, FILE, TIMER, PRESENCE,
                 LOCATION, CONTACT, EVENT, POLL, VOTE, POLL_CLOSE, CALL)  # fmt: skip
#: the types that refer to another message and change it rather than being one
GESTURES = (REACTION, EDIT, DELETE)
#: what a ``sync`` may carry for one's other devices (everything a user writes in a conversation)
SYNCABLE = (TEXT, REPLY, REACTION, EDIT, DELETE, FILE, TIMER, LOCATION, CONTACT, EVENT, POLL, VOTE, POLL_CLOSE)
#: what a conversation's timer applies to: these carry ``expires`` while it is on
EXPIRING = (TEXT, REPLY, REACTION, EDIT, DELETE, FILE, LOCATION, CONTACT, EVENT, POLL, VOTE, POLL_CLOSE)
#: the types whose one field is a map checked by its own class (core/cards.py, core/poll.py, core/call.py)
_MAPPED: dict[str, type[Location] | type[ContactCard] | type[Event] | type[Poll] | type[CallSignal]] = {
    LOCATION: Location, CONTACT: ContactCard, EVENT: Event, POLL: Poll, CALL: CallSignal,
}  # fmt: skip
MAX_EMOJI_BYTES = limits.MAX_EMOJI_BYTES
MAX_EMOJI_CODEPOINTS = 16
DELETE_WINDOW_MS = limits.DELETE_WINDOW_MS
MAX_GROUP_NAME_LEN = limits.MAX_GROUP_NAME_LEN
MAX_GROUP_TOPIC_LEN = limits.MAX_GROUP_TOPIC_LEN
RECEIPT_KINDS = ("delivered", "read", "undelivered")
TYPING_STATES = ("started", "stopped")
PRESENCE_STATES = ("online", "offline")
_VERSION = 1
_COMMON = {"v": int, "type": str, "id": bytes, "sent_at": int}
_FIELDS: dict[str, dict[str, type]] = {
    TEXT: {"text": str},
    RECEIPT: {"receipt": str, "ids": list},
    TYPING: {"typing": str},
    SYNC: {"to": str, "text": str},
    ALERT: {"text": str},
    GROUP_STATE: {"name": str, "topic": str},
    GROUP_TYPING: {"typing": str, "group": bytes},
    REPLY: {"text": str, "refers_to": bytes},
    REACTION: {"refers_to": bytes, "emoji": str, "remove": bool},
    EDIT: {"refers_to": bytes, "text": str},
    DELETE: {"refers_to": bytes},
    FILE: {"file": dict, "text": str},
    TIMER: {"timer": int},
    PRESENCE: {"presence": str},
    **{kind: {kind: dict} for kind in (LOCATION, CONTACT, EVENT, POLL, CALL)},
    VOTE: {"refers_to": bytes, "option": int, "remove": bool},
    POLL_CLOSE: {"refers_to": bytes},
}
#: the second form of a sync: any message one writes, as its encoded content
_SYNC_INNER = {"to": str, "inner": bytes}
_OPTIONAL = ("text", "receipt", "ids", "typing", "to", "name", "topic", "group", "refers_to", "emoji", "remove", "inner", "file", "timer", "expires", "presence",
             "location", "contact", "event", "poll", "call", "option")  # fmt: skip
#: a group id (core/groups/items.py GROUP_ID_LEN; not imported: content stays below groups)
_GROUP_ID_LEN = 16


@dataclass(frozen=True, kw_only=True, slots=True)
class Content:
    """One decoded content object; the fields not used by ``type`` are None."""

    type: str
    id: bytes
    sent_at: int
    text: str | None = None
    receipt: str | None = None
    ids: tuple[bytes, ...] | None = None
    typing: str | None = None
    to: str | None = None
    name: str | None = None
    topic: str | None = None
    group: bytes | None = None
    #: reply, reaction, edit, delete: the content id of the message it is about
    refers_to: bytes | None = None
    emoji: str | None = None
    remove: bool | None = None
    #: a sync of a message other than a text: that message's content
    inner: "Content | None" = None
    #: a file: where its encrypted blob lies and how to open it
    file: FileRef | None = None
    #: a timer: the conversation's new timer in ms (0: off)
    timer: int | None = None
    #: a message written while a timer is on: when it disappears (ms)
    expires: int | None = None
    #: presence: "online" or "offline"
    presence: str | None = None
    #: issue 17 item 6: a location, contact card, event, poll or call signal
    location: Location | None = None
    contact: ContactCard | None = None
    event: Event | None = None
    poll: Poll | None = None
    call: CallSignal | None = None
    #: a vote: the option's index in the poll (0-based)
    option: int | None = None

    @classmethod
    def make_text(cls, *, id: bytes, sent_at: int, text: str) -> "Content":
        return cls(type=TEXT, id=id, sent_at=sent_at, text=text)

    @classmethod
    def make_receipt(cls, *, id: bytes, sent_at: int, receipt: str, ids: tuple[bytes, ...] | list[bytes]) -> "Content":
        return cls(type=RECEIPT, id=id, sent_at=sent_at, receipt=receipt, ids=tuple(ids))

    @classmethod
    def make_typing(cls, *, id: bytes, sent_at: int, typing: str) -> "Content":
        return cls(type=TYPING, id=id, sent_at=sent_at, typing=typing)

    @classmethod
    def make_group_typing(cls, *, id: bytes, sent_at: int, typing: str, group: bytes) -> "Content":
        return cls(type=GROUP_TYPING, id=id, sent_at=sent_at, typing=typing, group=group)

    @classmethod
    def make_alert(cls, *, id: bytes, sent_at: int, text: str) -> "Content":
        return cls(type=ALERT, id=id, sent_at=sent_at, text=text)

    @classmethod
    def make_group_state(cls, *, id: bytes, sent_at: int, name: str, topic: str) -> "Content":
        return cls(type=GROUP_STATE, id=id, sent_at=sent_at, name=name, topic=topic)

    @classmethod
    def make_sync(cls, *, id: bytes, sent_at: int, to: str, text: str) -> "Content":
        return cls(type=SYNC, id=id, sent_at=sent_at, to=str(parse_address(to)), text=text)

    @classmethod
    def make_reply(cls, *, id: bytes, sent_at: int, text: str, refers_to: bytes) -> "Content":
        return cls(type=REPLY, id=id, sent_at=sent_at, text=text, refers_to=refers_to)

    @classmethod
    def make_reaction(cls, *, id: bytes, sent_at: int, refers_to: bytes, emoji: str, remove: bool = False) -> "Content":
        return cls(type=REACTION, id=id, sent_at=sent_at, refers_to=refers_to, emoji=emoji, remove=remove)

    @classmethod
    def make_edit(cls, *, id: bytes, sent_at: int, refers_to: bytes, text: str) -> "Content":
        return cls(type=EDIT, id=id, sent_at=sent_at, refers_to=refers_to, text=text)

    @classmethod
    def make_delete(cls, *, id: bytes, sent_at: int, refers_to: bytes) -> "Content":
        return cls(type=DELETE, id=id, sent_at=sent_at, refers_to=refers_to)

    @classmethod
    def make_file(cls, *, id: bytes, sent_at: int, file: FileRef, text: str = "") -> "Content":
        return cls(type=FILE, id=id, sent_at=sent_at, file=file, text=text)

    @classmethod
    def make_presence(cls, *, id: bytes, sent_at: int, presence: str) -> "Content":
        return cls(type=PRESENCE, id=id, sent_at=sent_at, presence=presence)

    @classmethod
    def make_location(cls, *, id: bytes, sent_at: int, location: Location) -> "Content":
        return cls(type=LOCATION, id=id, sent_at=sent_at, location=location)

    @classmethod
    def make_contact(cls, *, id: bytes, sent_at: int, contact: ContactCard) -> "Content":
        return cls(type=CONTACT, id=id, sent_at=sent_at, contact=contact)

    @classmethod
    def make_event(cls, *, id: bytes, sent_at: int, event: Event) -> "Content":
        return cls(type=EVENT, id=id, sent_at=sent_at, event=event)

    @classmethod
    def make_poll(cls, *, id: bytes, sent_at: int, poll: Poll) -> "Content":
        return cls(type=POLL, id=id, sent_at=sent_at, poll=poll)

    @classmethod
    def make_vote(cls, *, id: bytes, sent_at: int, refers_to: bytes, option: int, remove: bool = False) -> "Content":
        return cls(type=VOTE, id=id, sent_at=sent_at, refers_to=refers_to, option=option, remove=remove)

    @classmethod
    def make_poll_close(cls, *, id: bytes, sent_at: int, refers_to: bytes) -> "Content":
        return cls(type=POLL_CLOSE, id=id, sent_at=sent_at, refers_to=refers_to)

    @classmethod
    def make_call(cls, *, id: bytes, sent_at: int, call: CallSignal) -> "Content":
        return cls(type=CALL, id=id, sent_at=sent_at, call=call)

    @classmethod
    def make_timer(cls, *, id: bytes, sent_at: int, timer: int) -> "Content":
        return cls(type=TIMER, id=id, sent_at=sent_at, timer=timer)

    @classmethod
    def make_sync_of(cls, inner: "Content", *, to: str) -> "Content":
        """The copy of ``inner`` (one this device writes to ``to``) for the account's other
        devices: the text form for a text (older devices read it), else the inner form."""
        if inner.type == TEXT and inner.text is not None and inner.expires is None:
            return cls.make_sync(id=inner.id, sent_at=inner.sent_at, to=to, text=inner.text)
        return cls(type=SYNC, id=inner.id, sent_at=inner.sent_at, to=str(parse_address(to)), inner=inner)

    def message(self) -> "Content":
        """What a sync stands for (a text, or its inner content); any other content itself."""
        if self.type != SYNC:
            return self
        if self.inner is not None:
            return self.inner
        return Content.make_text(id=self.id, sent_at=self.sent_at, text=self.text or "")


_REQUIRED = {kind: {**_COMMON, **fields} for kind, fields in _FIELDS.items()}
_REQUIRED_KEYS = {kind: frozenset(required) for kind, required in _REQUIRED.items()}
_SYNC_INNER_REQUIRED = {**_COMMON, **_SYNC_INNER}
_SYNC_INNER_KEYS = frozenset(_SYNC_INNER_REQUIRED)
#: every field in canonical key order (UTF-8 length, then bytes): a map built in this order is
#: encoded with canonical.dumps_ordered, without cbor2 sorting it again
_ORDER = tuple(sorted({*_COMMON, *_OPTIONAL}, key=lambda k: (len(k.encode()), k.encode())))
_optional_values = operator.attrgetter(*_OPTIONAL)
#: each field's slot setter and default, for :func:`_built`
_SLOTS = tuple(
    (f.name, getattr(Content, f.name).__set__, None if f.default is dataclasses.MISSING else f.default) for f in dataclasses.fields(Content)
)


def _built(fields: dict[str, Any]) -> Content:
    """``Content(**fields)`` for the fields :func:`_check` returns (field names only), without
    the generated __init__ of a frozen dataclass, which sets ~25 fields one call at a time."""
    content = object.__new__(Content)
    get = fields.get
    for name, set_slot, default in _SLOTS:
        set_slot(content, get(name, default))
    return content
#: what may not be in an emoji: controls, unassigned and private use, surrogates, separators;
#: formatting characters too (bidi overrides) except the joiner of emoji sequences
_EMOJI_BANNED = frozenset({"Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Cf"})
_ZWJ = "\u200d"


def emoji_problem(emoji: str) -> str | None:
    """Why ``emoji`` cannot be a reaction, or None. Not a full grapheme check (that needs the
    Unicode segmentation tables): short, one line, nothing invisible but the joiner."""
    if not emoji:
        return "a reaction is one emoji, not empty"
    if len(emoji.encode()) > MAX_EMOJI_BYTES or len(emoji) > MAX_EMOJI_CODEPOINTS:
        return f"a reaction is one emoji (at most {MAX_EMOJI_CODEPOINTS} code points, {MAX_EMOJI_BYTES} bytes)"
    if any(c != _ZWJ and unicodedata.category(c) in _EMOJI_BANNED for c in emoji):
        return "a reaction may not hold spaces, control or formatting characters"
    return None


def _check(value: Any, err: type[ProtocolError]) -> dict[str, Any]:
    """Validate a content map (decoded, or about to be encoded); the fields of its Content."""

    remote = err is RemoteProtocolError

    def fail(message: str) -> ProtocolError:
        return err(f"message content: {message}", code="content_malformed" if remote else None)

    if type(value) is not dict:
        raise fail("must be a map")
    kind = value.get("type")
    if type(kind) is not str or kind not in _FIELDS:
        raise fail(f"unknown type {kind!r}")
    required, keys = _REQUIRED[kind], _REQUIRED_KEYS[kind]
    if kind == SYNC and "inner" in value:
        required, keys = _SYNC_INNER_REQUIRED, _SYNC_INNER_KEYS
    if kind in EXPIRING and "expires" in value:
        required, keys = {**required, "expires": int}, keys | {"expires"}
    if value.keys() != keys:
        missing, extra = sorted(set(required) - set(value)), sorted(set(value) - set(required))
        raise fail(f"{kind} content has the wrong fields (missing {missing}, unexpected {extra})")
    for key, tp in required.items():
        if type(value[key]) is not tp:
            raise fail(f"field {key!r} must be {tp.__name__}")
    if value["v"] != _VERSION:
        raise fail(f"unsupported version {value['v']}")
    if len(value["id"]) != limits.CONTENT_ID_LEN:
        raise fail(f"id must be {limits.CONTENT_ID_LEN} bytes")
    if not 0 <= value["sent_at"] < 2**63:
        raise fail("sent_at out of range")
    fields: dict[str, Any] = {"type": kind, "id": value["id"], "sent_at": value["sent_at"]}
    if "text" in value:
        if len(value["text"].encode()) > limits.MAX_TEXT_LEN:
            raise fail(f"text longer than {limits.MAX_TEXT_LEN} bytes")
        fields["text"] = value["text"]
    if kind == RECEIPT:
        if value["receipt"] not in RECEIPT_KINDS:
            raise fail(f"unknown receipt {value['receipt']!r}")
        ids = value["ids"]
        if not 0 < len(ids) <= limits.MAX_RECEIPT_IDS:
            raise fail(f"a receipt names 1..{limits.MAX_RECEIPT_IDS} messages")
        if any(type(i) is not bytes or len(i) != limits.CONTENT_ID_LEN for i in ids):
            raise fail(f"receipt ids must be {limits.CONTENT_ID_LEN} bytes")
        if len(set(ids)) != len(ids):
            raise fail("receipt ids repeat")
        fields.update(receipt=value["receipt"], ids=tuple(ids))
    elif kind in (TYPING, GROUP_TYPING):
        if value["typing"] not in TYPING_STATES:
            raise fail(f"unknown typing state {value['typing']!r}")
        fields["typing"] = value["typing"]
        if kind == GROUP_TYPING:
            if len(value["group"]) != _GROUP_ID_LEN:
                raise fail(f"a group id is {_GROUP_ID_LEN} bytes")
            fields["group"] = value["group"]
    elif kind == SYNC:
        try:
            to = str(parse_address(value["to"], remote=remote))
        except ProtocolError as exc:
            raise fail(str(exc)) from None
        if to != value["to"]:
            raise fail("address is not in normal form")
        fields["to"] = to
        if "inner" in value:
            try:
                inner_value = canonical.loads(value["inner"], max_bytes=limits.MAX_CONTENT_BYTES)
            except RemoteProtocolError as exc:
                raise fail(f"sync inner content: {exc}") from None
            if type(inner_value) is dict and inner_value.get("type") not in SYNCABLE:
                raise fail(f"a sync carries {', '.join(SYNCABLE)}, not {inner_value.get('type')!r}")
            inner = _built(_check(inner_value, err))
            if (inner.id, inner.sent_at) != (value["id"], value["sent_at"]):
                raise fail("a sync has the id and sent_at of the message it carries")
            fields["inner"] = inner
    elif kind == PRESENCE:
        if value["presence"] not in PRESENCE_STATES:
            raise fail(f"unknown presence {value['presence']!r}")
        fields["presence"] = value["presence"]
    elif kind == GROUP_STATE:
        if not 0 < len(value["name"].encode()) <= MAX_GROUP_NAME_LEN:
            raise fail(f"a group name is 1..{MAX_GROUP_NAME_LEN} bytes")
        if len(value["topic"].encode()) > MAX_GROUP_TOPIC_LEN:
            raise fail(f"a group topic is at most {MAX_GROUP_TOPIC_LEN} bytes")
        fields.update(name=value["name"], topic=value["topic"])
    elif kind == FILE:
        try:
            fields["file"] = FileRef.from_map(value["file"], remote=remote)
        except ProtocolError as exc:
            raise fail(str(exc)) from None
    elif kind in _MAPPED:
        try:
            fields[kind] = _MAPPED[kind].from_map(value[kind], remote=remote)
        except ProtocolError as exc:
            raise fail(str(exc)) from None
    elif kind == VOTE:
        if not 0 <= value["option"] < MAX_POLL_OPTIONS:
            raise fail(f"a vote's option is 0..{MAX_POLL_OPTIONS - 1}")
        fields.update(option=value["option"], remove=value["remove"])
    if "refers_to" in required:
        if len(value["refers_to"]) != limits.CONTENT_ID_LEN:
            raise fail(f"refers_to must be a {limits.CONTENT_ID_LEN}-byte content id")
        if value["refers_to"] == value["id"]:
            raise fail("a message cannot refer to itself")
        fields["refers_to"] = value["refers_to"]
    if "expires" in required:
        if not value["sent_at"] < value["expires"] <= value["sent_at"] + MAX_TIMER_MS:
            raise fail("expires must be after sent_at, by at most the longest timer")
        fields["expires"] = value["expires"]
    if kind == TIMER:
        problem = timer_problem(value["timer"])
        if problem is not None:
            raise fail(problem)
        fields["timer"] = value["timer"]
    if kind == REACTION:
        problem = emoji_problem(value["emoji"])
        if problem is not None:
            raise fail(problem)
        fields.update(emoji=value["emoji"], remove=value["remove"])
    return fields


def encode_content(content: Content) -> bytes:
    """Canonical CBOR of ``content``; LocalProtocolError if it is not valid."""
    if not isinstance(content, Content):
        raise LocalProtocolError("encode_content takes a Content")
    given: dict[str, Any] = {"v": _VERSION, "type": content.type, "id": content.id, "sent_at": content.sent_at}
    used = _FIELDS.get(content.type, {})
    for name, field in zip(_OPTIONAL, _optional_values(content)):
        if field is None and name not in used:
            continue  # what the loop below does for it: nothing (the common case, cut short)
        if content.type == SYNC and content.inner is not None and name in ("text", "inner"):
            if name == "text" and field is not None:
                raise LocalProtocolError("message content: a sync carries a text or an inner content, not both")
            if name == "inner":
                given["inner"] = encode_content(field)
            continue
        if name == "expires" and content.type in EXPIRING:
            if field is not None:
                given[name] = field
            continue
        if name in used:
            given[name] = list(field) if name == "ids" and isinstance(field, tuple) else field
            if name == "file" and isinstance(field, FileRef):
                given[name] = field.to_map()
            if name in _MAPPED and field is not None:
                given[name] = field.to_map()
        elif field is not None:
            raise LocalProtocolError(f"message content: {content.type} content has no field {name!r}")
    _check(given, LocalProtocolError)
    return canonical.dumps_ordered({name: given[name] for name in _ORDER if name in given})


def decode_content(raw: bytes) -> Content:
    """Strictly decode one content object (RemoteProtocolError on anything malformed)."""
    try:
        value = canonical.loads(raw, max_bytes=limits.MAX_CONTENT_BYTES)
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(f"message content: {exc}", code="content_malformed") from None
    return _built(_check(value, RemoteProtocolError))
