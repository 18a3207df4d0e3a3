"""Polls, locations, events and contact cards typed in the chat app's compose box (issue 17 item
6), as ``sonet poll|location|event|contact`` send them (client/polls.py):

- ``/poll QUESTION | OPTION | OPTION ...`` (2..10 options; ``/poll+`` lets voters pick several)
- ``/location LAT LON [LABEL]`` (decimal degrees)
- ``/event TITLE | TIME [| PLACE]`` (TIME in ISO 8601, e.g. 2026-12-24T18:00: local time)
- ``/contact ADDRESS [NAME]``

``parse_post`` turns the text into what to send, checked as the sending checks it (so a
mistake is one line before anything connects), a one-line problem, or None for any other text.
"""

from __future__ import annotations

from dataclasses import dataclass

from sonet.core.address import parse_address
from sonet.core.cards import ContactCard, Event, Location, parse_degrees
from sonet.core.errors import ProtocolError
from sonet.core.poll import MAX_POLL_OPTIONS, Poll

from ..cli_rich import parse_time

__all__ = ["Post", "parse_post", "COMPOSE_HELP"]

COMPOSE_HELP = (
    "/poll /location …",
    f"/poll Q | A | B (2..{MAX_POLL_OPTIONS}; /poll+: several choices) · /location LAT LON [label] · /event TITLE | TIME [| PLACE] · /contact user@node [name]",
)

_USAGE = {
    "poll": "/poll QUESTION | OPTION | OPTION ...",
    "poll+": "/poll+ QUESTION | OPTION | OPTION ...",
    "location": "/location LAT LON [LABEL]",
    "event": "/event TITLE | TIME [| PLACE]",
    "contact": "/contact ADDRESS [NAME]",
}


@dataclass(frozen=True)
class Post:
    """What to send: ``kind`` (poll, location, event, contact) and its value."""

    kind: str
    value: Poll | Location | Event | ContactCard


def _parts(rest: str) -> list[str]:
    return [part.strip() for part in rest.split("|")]


def _make(name: str, rest: str) -> Post:
    """The post of ``/name rest``; a ProtocolError (or ValueError) says what is wrong."""
    if name in ("poll", "poll+"):
        question, *options = _parts(rest)
        if len(options) < 2:
            raise ValueError("a poll needs a question and at least two options, separated by |")
        poll = Poll(question=question, options=tuple(options), multiple=name == "poll+")
        poll.to_map()
        return Post("poll", poll)
    if name == "location":
        words = rest.split(maxsplit=2)
        if len(words) < 2:
            raise ValueError("a location is a latitude and a longitude in decimal degrees")
        location = Location(lat=parse_degrees(words[0], limit=90), lon=parse_degrees(words[1], limit=180), label=" ".join(words[2:]))
        location.to_map()
        return Post("location", location)
    if name == "event":
        parts = _parts(rest)
        if len(parts) not in (2, 3):
            raise ValueError("an event is a title and a time, and a place if you like, separated by |")
        event = Event(title=parts[0], start=parse_time(parts[1]), place=parts[2] if len(parts) == 3 else "")
        event.to_map()
        return Post("event", event)
    address, _, card_name = rest.partition(" ")
    card = ContactCard(name=card_name.strip(), addresses=(str(parse_address(address)),))
    card.to_map()
    return Post("contact", card)


def parse_post(text: str) -> Post | str | None:
    """The post ``text`` asks for, a one-line problem (str), or None when it is no such command."""
    if not text.startswith("/"):
        return None
    name, _, rest = text[1:].partition(" ")
    if name not in _USAGE:
        return None
    if not rest.strip():
        return f"usage: {_USAGE[name]}"
    try:
        return _make(name, rest.strip())
    except (ProtocolError, ValueError) as exc:
        return f"/{name}: {exc} (usage: {_USAGE[name]})"
