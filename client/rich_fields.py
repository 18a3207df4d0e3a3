"""Locations, contact cards, events, polls, votes, poll closes and call signals (issue 17 item
6) as the device keeps them among a message's fields (client/state_history.py
``content_fields``: sealed by the vault like a text), back to content (a 1:1 one that waited on
the device, client/pending.py), and what ``recv`` and ``history`` show of them.

Kept: ``{location: map}``, ``{contact: map}``, ``{event: map}``, ``{poll: map}`` as their content
carries them (core/cards.py, core/poll.py); a vote ``{refers_to, option, remove}`` (the option's
index, 0-based; shown from 1, as ``sonet vote`` takes it); a close ``{refers_to}``; a call signal
``{call: {id (hex), signal, data}}``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sonet.cli_output import iso_ms
from sonet.core.call import CallSignal
from sonet.core.cards import ContactCard, Event, Location
from sonet.core.content import CALL, CONTACT, EVENT, LOCATION, POLL, POLL_CLOSE, VOTE, Content
from sonet.core.poll import Poll, Tally

__all__ = ["RICH_TYPES", "RICH_MESSAGES", "rich_fields", "rich_content", "poll_of", "rich_json", "rich_line", "poll_json", "poll_text", "call_of"]

#: the types of item 6 a device keeps (a call signal too: shown by recv, never in a history)
RICH_TYPES = (LOCATION, CONTACT, EVENT, POLL, VOTE, POLL_CLOSE, CALL)
#: those that are messages of a conversation (votes and closes change the poll they name)
RICH_MESSAGES = (LOCATION, CONTACT, EVENT, POLL)
_E7 = Decimal(10_000_000)


def rich_fields(content: Content) -> dict[str, Any]:
    """The fields beyond ``text``/``refers_to``/``expires`` (content_fields keeps those)."""
    if content.type in RICH_MESSAGES:
        return {content.type: getattr(content, content.type).to_map()}
    if content.type == VOTE:
        return {"option": content.option, "remove": bool(content.remove)}
    if content.type == CALL and content.call is not None:
        return {"call": {"id": content.call.call.hex(), "signal": content.call.signal, "data": content.call.data}}
    return {}


def rich_content(kind: str, msg_id: bytes, sent_at: int, fields: dict[str, Any]) -> Content:
    """The content a kept message of ``kind`` was (its maps checked again: the store is not
    trusted blindly)."""
    if kind == LOCATION:
        return Content.make_location(id=msg_id, sent_at=sent_at, location=Location.from_map(fields[kind], remote=False))
    if kind == CONTACT:
        return Content.make_contact(id=msg_id, sent_at=sent_at, contact=ContactCard.from_map(fields[kind], remote=False))
    if kind == EVENT:
        return Content.make_event(id=msg_id, sent_at=sent_at, event=Event.from_map(fields[kind], remote=False))
    if kind == POLL:
        return Content.make_poll(id=msg_id, sent_at=sent_at, poll=Poll.from_map(fields[kind], remote=False))
    if kind == VOTE:
        refers_to = bytes.fromhex(fields["refers_to"])
        return Content.make_vote(id=msg_id, sent_at=sent_at, refers_to=refers_to, option=fields["option"], remove=fields["remove"])
    if kind == POLL_CLOSE:
        return Content.make_poll_close(id=msg_id, sent_at=sent_at, refers_to=bytes.fromhex(fields["refers_to"]))
    raise ValueError(f"not a kept message of item 6: {kind!r}")


def poll_of(fields: dict[str, Any]) -> Poll | None:
    """The poll a kept ``poll`` message's fields hold; None for any other."""
    kept = fields.get("poll")
    return Poll.from_map(kept, remote=False) if isinstance(kept, dict) else None


def _degrees(e7: int) -> float:
    return float(Decimal(e7) / _E7)


def rich_json(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """What ``recv --json`` adds for a message of item 6 (``refers_to`` comes with the gestures')."""
    if kind == LOCATION and isinstance(fields.get("location"), dict):
        loc = fields["location"]
        return {"location": {"lat": _degrees(loc["lat"]), "lon": _degrees(loc["lon"]), "accuracy": loc["accuracy"], "label": loc["label"]}}
    if kind == CONTACT and isinstance(fields.get("contact"), dict):
        return {"contact": {"name": fields["contact"]["name"], "addresses": list(fields["contact"]["addresses"])}}
    if kind == EVENT and isinstance(fields.get("event"), dict):
        ev = fields["event"]
        return {"event": {"title": ev["title"], "start_at": iso_ms(ev["start"]), "end_at": iso_ms(ev["end"] or None), "place": ev["place"]}}
    if kind == POLL and isinstance(fields.get("poll"), dict):
        p = fields["poll"]
        return {"poll": {"question": p["question"], "options": list(p["options"]), "multiple": p["multiple"]}}
    if kind == VOTE and isinstance(fields.get("option"), int):
        return {"option": fields["option"] + 1, "remove": bool(fields.get("remove"))}
    if kind == CALL and isinstance(fields.get("call"), dict):
        return {"call": dict(fields["call"])}
    return {}


def rich_line(kind: str, fields: dict[str, Any]) -> str | None:
    """What follows the sender in a ``recv`` line for a message of item 6; None for others."""
    try:
        if kind == LOCATION:
            loc = fields["location"]
            accuracy = f" (±{loc['accuracy']} m)" if loc["accuracy"] else ""
            label = f" {loc['label']!r}" if loc["label"] else ""
            return f"shared a location{label}: {_degrees(loc['lat'])}, {_degrees(loc['lon'])}{accuracy}"
        if kind == CONTACT:
            card = fields["contact"]
            name = f"{card['name']} " if card["name"] else ""
            return f"shared a contact: {name}<{', '.join(card['addresses'])}>"
        if kind == EVENT:
            ev = fields["event"]
            end = f" to {iso_ms(ev['end'])}" if ev["end"] else ""
            place = f" at {ev['place']}" if ev["place"] else ""
            return f"shared an event: {ev['title']!r} {iso_ms(ev['start'])}{end}{place}"
        if kind == POLL:
            return f"asks: {poll_text(Poll.from_map(fields['poll'], remote=False))}"
        if kind == VOTE:
            verb = "took back the vote for" if fields.get("remove") else "voted for"
            return f"{verb} option {fields['option'] + 1} of poll {fields['refers_to']}"
        if kind == POLL_CLOSE:
            return f"closed poll {fields['refers_to']}"
        if kind == CALL:
            call = fields["call"]
            what = {"offer": "calls you", "answer": "answered the call", "ice": "sent a call candidate"}.get(call["signal"])
            ignored = f"; ignored: {call['note']}" if call.get("note") else ""  # client/calls.py
            return f"{what or 'hung up (' + call['data'] + ')'} (call {call['id']}{ignored})"
    except (KeyError, TypeError, ValueError):
        return f"sent a {kind} this device cannot show"
    return None


def poll_text(poll: Poll, result: Tally | None = None) -> str:
    """``question [1. a (2); 2. b (0)]``, with the counts when there is a result."""
    counts = result.counts if result is not None else None
    options = "; ".join(f"{i + 1}. {o}" + (f" ({counts[i]})" if counts is not None else "") for i, o in enumerate(poll.options))
    how = ", several choices" if poll.multiple else ""
    closed = ", closed" if result is not None and result.closed else ""
    return f"{poll.question} [{options}{how}{closed}]"


def poll_json(poll: Poll, result: Tally) -> dict[str, Any]:
    """A poll and its result in ``history --json`` (and ``sonet poll-close``'s answer)."""
    return {
        "question": poll.question, "multiple": poll.multiple, "closed": result.closed, "closed_at": iso_ms(result.closed_at),
        "options": [{"option": i + 1, "text": o, "votes": len(v), "voters": list(v)} for i, (o, v) in enumerate(zip(poll.options, result.voters))],
    }  # fmt: skip


def call_of(fields: dict[str, Any]) -> CallSignal | None:
    """The signal a kept ``call`` message's fields hold."""
    kept = fields.get("call")
    if not isinstance(kept, dict):
        return None
    return CallSignal.from_map({"call": bytes.fromhex(kept["id"]), "signal": kept["signal"], "data": kept["data"]}, remote=False)
