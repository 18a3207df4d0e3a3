"""``sonet poll|vote|poll-close|location|contact|event`` (issue 17 item 6). The work is
``Device.send_poll``, ``vote``, ``close_poll``, ``send_location``, ``send_contact`` and
``send_event`` (client/polls.py); ADDRESS|GROUP is an address or a group's id or name, as for
``sonet history``; MESSAGE_ID the poll's id as ``recv`` and ``history`` print it. Call
signalling is ``sonet call`` (client/cli_call.py)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sonet.cli_output import iso_ms
from sonet.core.address import parse_address
from sonet.core.cards import MAX_ACCURACY_M, ContactCard, Event, Location, parse_degrees
from sonet.core.errors import LocalProtocolError
from sonet.core.poll import MAX_POLL_OPTIONS, MIN_POLL_OPTIONS

from .cli_errors import as_usage, usage_error
from .cli_gestures import gesture_result_json, message_id_arg

if TYPE_CHECKING:  # trio and the SDK are imported by the commands that run: `sonet --help` starts fast
    from .cli_groups import Shell
    from .gestures import GestureResult
    from .history import HistoryItem
    from .polls import PostResult
    from .sdk import Device

__all__ = ["add_rich_commands", "rich_history_json", "rich_history_text", "parse_time"]

#: what a usage error quotes (client/cli_errors.py)
_POLL_USAGE = "sonet poll ADDRESS|GROUP QUESTION OPTION... [--multiple]"
_VOTE_USAGE = "sonet vote MESSAGE_ID OPTION [--remove]"
_POLL_CLOSE_USAGE = "sonet poll-close MESSAGE_ID"
_LOCATION_USAGE = "sonet location ADDRESS|GROUP LAT LON [--label TEXT] [--accuracy METRES]"
_EVENT_USAGE = "sonet event ADDRESS|GROUP TITLE --at TIME [--end TIME] [--place TEXT]"


def parse_time(text: str) -> int:
    """ISO 8601 (``2026-12-24T18:00``, ``...Z``, ``...+01:00``; without a zone: this machine's
    local time) -> ms since the epoch."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise LocalProtocolError(f"{text!r} is not a time (ISO 8601, e.g. 2026-12-24T18:00 or 2026-12-24T17:00Z)", code="bad_input") from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time, as the user reads a clock
    return int(when.timestamp() * 1000)


def _post_json(r: PostResult, group_name: str | None) -> dict[str, Any]:
    from .cli_groups import conversation_json

    return {"id": r.id.hex(), "type": r.type, "state": r.state, "code": r.code, "message": r.message, **conversation_json(r.conversation, group_name)}


def _post_line(r: PostResult, what: str, group_name: str | None) -> str:
    from .cli_groups import conversation_label

    where = conversation_label(r.conversation, group_name)
    state = f"{r.state}: {r.message}" if r.message else r.state
    return f"{what} in the conversation with {where} ({state}); id {r.id.hex()}"


def rich_history_json(item: HistoryItem) -> dict[str, Any]:
    """What ``history --json`` adds for a location, contact card, event or poll (a poll: with its result)."""
    from .rich_fields import poll_json, poll_of, rich_json  # (the content model: not for building the parser)

    if item.data is None or item.deleted:
        return {}
    poll = poll_of({"poll": item.data}) if item.type == "poll" else None
    if poll is not None and item.poll_result is not None:
        return {"poll": poll_json(poll, item.poll_result)}
    return rich_json(item.type, {item.type: item.data})


def rich_history_text(item: HistoryItem) -> str | None:
    """A ``history`` line's text for a location, contact card, event or poll; None for others."""
    from .rich_fields import poll_of, poll_text, rich_line  # (the content model: not for building the parser)

    if item.data is None:
        return None
    if item.type == "poll":
        poll = poll_of({"poll": item.data})
        return f"poll: {poll_text(poll, item.poll_result)}" if poll is not None else None
    return rich_line(item.type, {item.type: item.data})


def _show_post(args: argparse.Namespace, shell: Shell, device: Device, result: PostResult, what: str, extra: dict[str, Any]) -> None:
    from .cli_groups import group_name_of

    name = group_name_of(device, result.conversation, result.is_group)
    shell.show(args, {**_post_json(result, name), **extra}, _post_line(result, what, name))


def cmd_poll(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    count = len(args.options)
    if not MIN_POLL_OPTIONS <= count <= MAX_POLL_OPTIONS:  # the arguments' count: before a home is opened
        raise usage_error(f"a poll has {MIN_POLL_OPTIONS}..{MAX_POLL_OPTIONS} options, not {count}", _POLL_USAGE)
    repeated = sorted({o for o in args.options if args.options.count(o) > 1})
    if repeated:
        raise usage_error(f"a poll's options are distinct: {', '.join(map(repr, repeated))} given more than once", _POLL_USAGE)
    device = shell.device(args)
    result = trio.run(lambda: device.send_poll(args.conversation, args.question, args.options, multiple=args.multiple))
    extra = {"poll": {"question": args.question, "options": list(args.options), "multiple": args.multiple}}
    _show_post(args, shell, device, result, f"asked {args.question!r}", extra)


def _vote_json(r: GestureResult, group_name: str | None, option: int, remove: bool) -> dict[str, Any]:
    return {**gesture_result_json(r, group_name), "option": option, "remove": remove}


def cmd_vote(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    from .cli_groups import group_name_of
    from .polls import option_index

    poll_id = message_id_arg(args.message_id, _VOTE_USAGE)
    device = shell.device(args)
    result = trio.run(lambda: device.vote(poll_id, args.option, remove=args.remove))
    poll, _tally = device.poll_result(poll_id)
    option = option_index(poll, args.option) + 1
    verb = "took back the vote for" if args.remove else "voted for"
    state = f"{result.state}: {result.message}" if result.message else result.state
    line = f"{verb} {option}. {poll.options[option - 1]} in poll {poll_id.hex()} ({state}); id {result.id.hex()}"
    shell.show(args, _vote_json(result, group_name_of(device, result.conversation, result.is_group), option, args.remove), line)


def cmd_poll_close(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    from .cli_groups import group_name_of
    from .rich_fields import poll_json, poll_text

    poll_id = message_id_arg(args.message_id, _POLL_CLOSE_USAGE)
    device = shell.device(args)
    result, poll, tally = trio.run(lambda: device.close_poll(poll_id))
    state = f"{result.state}: {result.message}" if result.message else result.state
    line = f"closed poll {poll_id.hex()} ({state}): {poll_text(poll, tally)}"
    name = group_name_of(device, result.conversation, result.is_group)
    shell.show(args, {**gesture_result_json(result, name), "poll": poll_json(poll, tally)}, line)


def _accuracy(text: str) -> int:
    """``--accuracy METRES``: out of its range is a usage error, as any option's value."""
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ACCURACY_M:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of metres from 0 to {MAX_ACCURACY_M}")
    return int(text)


def cmd_location(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    from .rich_fields import rich_json

    with as_usage(_LOCATION_USAGE):  # 95, north: before a home is opened
        lat_e7, lon_e7 = parse_degrees(args.lat, limit=90), parse_degrees(args.lon, limit=180)
    device = shell.device(args)
    location = Location(lat=lat_e7, lon=lon_e7, accuracy=args.accuracy, label=args.label)
    location.to_map()  # a bad label or accuracy: one line before anything connects
    result = trio.run(lambda: device.send_location(args.conversation, location))
    lat, lon = location.degrees()
    extra = rich_json("location", {"location": location.to_map()})
    _show_post(args, shell, device, result, f"shared location {lat}, {lon}", extra)


def cmd_contact(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    from .rich_fields import rich_json

    device = shell.device(args)
    addresses = tuple(str(parse_address(a)) for a in args.card_addresses)  # bad_address: one line
    card = ContactCard(name=args.name, addresses=addresses)
    card.to_map()
    result = trio.run(lambda: device.send_contact(args.conversation, card))
    _show_post(args, shell, device, result, f"shared the contact {', '.join(card.addresses)}", rich_json("contact", {"contact": card.to_map()}))


def cmd_event(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    from .rich_fields import rich_json

    with as_usage(_EVENT_USAGE):  # tomorrow: before a home is opened
        start, end = parse_time(args.at), parse_time(args.end) if args.end else 0
    if args.end and end < start:  # in the options' words
        raise usage_error(f"--end {args.end} is before --at {args.at}: an event cannot end before it starts", _EVENT_USAGE)
    device = shell.device(args)
    event = Event(title=args.title, start=start, end=end, place=args.place)
    event.to_map()
    result = trio.run(lambda: device.send_event(args.conversation, event))
    _show_post(args, shell, device, result, f"shared the event {args.title!r} at {iso_ms(event.start)}", rich_json("event", {"event": event.to_map()}))


def add_rich_commands(sub: argparse._SubParsersAction, shell: Shell) -> None:
    """The commands under the command line's subparsers (client/cli.py build_parser)."""
    conversation = {"metavar": "ADDRESS|GROUP", "help": "a contact's address (user@node), or a group's id or name"}
    message_id = {"metavar": "MESSAGE_ID", "help": "the poll's id (32 hex digits, as history and recv --json print it)"}
    post_json = "one JSON object: id, type, to (or group: {id, name}), state, code, message"

    p = sub.add_parser("poll", help="ask a question with options", description=f"Send a poll of 2..{MAX_POLL_OPTIONS} options to "
                       "ADDRESS|GROUP; everyone in it votes (`sonet vote`), you close it (`sonet poll-close`); `sonet history` "
                       "shows the result, counted alike on every device.")  # fmt: skip
    p.add_argument("conversation", **conversation)
    p.add_argument("question", metavar="QUESTION")
    p.add_argument("options", metavar="OPTION", nargs="+", help=f"2..{MAX_POLL_OPTIONS} distinct options")
    p.add_argument("--multiple", action="store_true", help="a voter may choose several options")
    p.add_argument("--json", action="store_true", help=post_json + ", poll")
    p.set_defaults(fn=lambda args: cmd_poll(args, shell))

    p = sub.add_parser("vote", help="vote in a poll", description="Choose OPTION of poll MESSAGE_ID (in a single-choice poll it "
                       "replaces your earlier choice), or take it back with --remove.")  # fmt: skip
    p.add_argument("message_id", **message_id)
    p.add_argument("option", metavar="OPTION", help="the option's number (from 1) or its text")
    p.add_argument("--remove", action="store_true", help="take back this vote")
    p.add_argument("--json", action="store_true", help="one JSON object: id, type, refers_to, to (or group: {id, name}), state, code, message, option (from 1), remove")
    p.set_defaults(fn=lambda args: cmd_vote(args, shell))

    p = sub.add_parser("poll-close", help="close one of your polls", description="End poll MESSAGE_ID (yours): votes cast after "
                       "this are not counted; prints the result as this device counts it.")  # fmt: skip
    p.add_argument("message_id", **message_id)
    p.add_argument("--json", action="store_true", help="one JSON object: id, type, refers_to, to (or group: {id, name}), state, code, message, "
                   "poll (question, multiple, closed, closed_at, options: option, text, votes, voters)")  # fmt: skip
    p.set_defaults(fn=lambda args: cmd_poll_close(args, shell))

    p = sub.add_parser("location", help="share a location", description="Send a location (decimal degrees) to ADDRESS|GROUP.")
    p.add_argument("conversation", **conversation)
    p.add_argument("lat", metavar="LAT", help="latitude, -90..90 (e.g. 52.5163)")
    p.add_argument("lon", metavar="LON", help="longitude, -180..180 (e.g. 13.3777)")
    p.add_argument("--label", default="", help="what is there (one line)")
    p.add_argument("--accuracy", type=_accuracy, default=0, metavar="METRES", help=f"how far off it may be, 0..{MAX_ACCURACY_M} (0: unknown)")
    p.add_argument("--json", action="store_true", help=post_json + ", location (lat, lon, accuracy, label)")
    p.set_defaults(fn=lambda args: cmd_location(args, shell))

    p = sub.add_parser("contact", help="share a contact card", description="Send a contact card (a name and Sonet addresses) to ADDRESS|GROUP.")
    p.add_argument("conversation", **conversation)
    p.add_argument("card_addresses", metavar="CARD_ADDRESS", nargs="+", help="the contact's address(es), user@node")
    p.add_argument("--name", default="", help="the contact's name as shown")
    p.add_argument("--json", action="store_true", help=post_json + ", contact (name, addresses)")
    p.set_defaults(fn=lambda args: cmd_contact(args, shell))

    p = sub.add_parser("event", help="share an event", description="Send an event (a title, a time, an optional end and place) to ADDRESS|GROUP.")
    p.add_argument("conversation", **conversation)
    p.add_argument("title", metavar="TITLE")
    p.add_argument("--at", required=True, metavar="TIME", help="when it starts: ISO 8601, e.g. 2026-12-24T18:00 (local) or ...Z (UTC)")
    p.add_argument("--end", metavar="TIME", help="when it ends")
    p.add_argument("--place", default="", help="where (one line)")
    p.add_argument("--json", action="store_true", help=post_json + ", event (title, start_at, end_at, place)")
    p.set_defaults(fn=lambda args: cmd_event(args, shell))
