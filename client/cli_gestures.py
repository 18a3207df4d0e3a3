"""``sonet reply|react|edit|delete MESSAGE_ID ...`` (issue 17 item 3) and how ``recv`` and
``history`` print replies, reactions, edits and deletes. The work is ``Device.reply``, ``react``,
``edit`` and ``delete`` (client/gestures.py); MESSAGE_ID is the 32 hex digits ``recv`` and
``history`` print, and the conversation is the one this device keeps that message in."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sonet.core.limits import DELETE_WINDOW_MS, MAX_EMOJI_BYTES

from .cli_errors import as_usage, usage_error

if TYPE_CHECKING:  # client/cli_groups.py prints group messages with gesture_line
    from .cli_groups import Shell
    from .gestures import GestureResult  # trio and the SDK are imported by the commands that run: `sonet --help` starts fast
    from .history import HistoryItem

__all__ = [
    "add_gesture_commands", "gesture_result_json", "gesture_line", "gesture_json_fields", "history_marks", "history_extra_json", "message_id_arg",
]  # fmt: skip

#: what a usage error quotes (client/cli_errors.py)
_REPLY_USAGE = "sonet reply MESSAGE_ID TEXT"
_REACT_USAGE = "sonet react MESSAGE_ID EMOJI [--remove]"
_EDIT_USAGE = "sonet edit MESSAGE_ID TEXT"
_DELETE_USAGE = "sonet delete MESSAGE_ID [--everyone]"


def message_id_arg(text: str, usage: str) -> bytes:
    """A MESSAGE_ID argument: not 32 hex digits is a usage error of the command (``usage``),
    found before a home is opened."""
    from .gestures import parse_message_id

    with as_usage(usage):
        return parse_message_id(text)


def gesture_result_json(r: GestureResult, group_name: str | None) -> dict[str, Any]:
    """``group_name``: the group's (client/cli_groups.py group_name_of); None for 1:1."""
    from .cli_groups import conversation_json

    return {
        "id": r.id.hex(), "type": r.type, "refers_to": r.refers_to.hex(), "state": r.state, "code": r.code, "message": r.message,
        **conversation_json(r.conversation, group_name),
    }  # fmt: skip


def _result_line(r: GestureResult, what: str, group_name: str | None) -> str:
    from .cli_groups import conversation_label
    from .gestures import DELETED_HERE

    if r.state == DELETED_HERE:
        return f"deleted message {r.refers_to.hex()} on this device (the others keep it)"
    where = conversation_label(r.conversation, group_name)
    state = f"{r.state}: {r.message}" if r.message else r.state
    return f"{what} in the conversation with {where} ({state}); id {r.id.hex()}"


def gesture_json_fields(fields: dict) -> dict[str, Any]:
    """The ``recv --json`` fields of a reply, reaction, edit or delete: what it refers to."""
    return {key: fields[key] for key in ("refers_to", "emoji", "remove") if key in fields}


def gesture_line(kind: str, fields: dict) -> str | None:
    """What follows the sender in a ``recv`` line for a reply, reaction, edit or delete; None
    for a text."""
    named = fields.get("refers_to", "")
    if kind == "reply":
        return f"(reply to {named}): {fields.get('text', '')}"
    if kind == "reaction":
        return f"took back {fields.get('emoji', '')} on {named}" if fields.get("remove") else f"reacted {fields.get('emoji', '')} to {named}"
    if kind == "edit":
        return f"edited {named}: {fields.get('text', '')}"
    if kind == "delete":
        return f"deleted {named} for everyone"
    return None


def history_extra_json(item: HistoryItem) -> dict[str, Any]:
    """The folded state in ``history --json``."""
    return {
        "refers_to": item.refers_to.hex() if item.refers_to else None, "quote": item.quote,
        "thread": item.thread.hex() if item.thread else None, "edited": item.edited, "versions": list(item.versions),
        "reactions": [{"emoji": r.emoji, "count": r.count, "mine": r.mine} for r in item.reactions], "deleted": item.deleted,
    }  # fmt: skip


def history_marks(item: HistoryItem) -> tuple[str, str]:
    """(before the text, after it) in a ``history`` line: the quote, and edited / reactions."""
    before = ""
    if item.refers_to is not None:
        before = f'↪ "{item.quote}" ' if item.quote else f"↪ {item.refers_to.hex()} "
    after = []
    if item.edited:
        after.append(f"edited {item.edited}")
    if item.reactions:
        after.append(" ".join(f"{r.emoji} {r.count}" for r in item.reactions))
    return before, ("  [" + "; ".join(after) + "]") if after else ""


def cmd_reply(args: argparse.Namespace, shell: Shell, text_of: Callable[[str], str]) -> None:
    import trio

    from .cli_groups import group_name_of

    msg_id = message_id_arg(args.message_id, _REPLY_USAGE)
    device = shell.device(args)
    text = text_of(args.text)
    result = trio.run(lambda: device.reply(msg_id, text))
    name = group_name_of(device, result.conversation, result.is_group)
    shell.show(args, gesture_result_json(result, name), _result_line(result, f"replied to {msg_id.hex()}", name))


def cmd_react(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    from sonet.core.content import emoji_problem

    from .cli_groups import group_name_of

    msg_id = message_id_arg(args.message_id, _REACT_USAGE)
    problem = emoji_problem(args.emoji)
    if problem is not None:  # before a home is opened, as the id
        raise usage_error(problem, _REACT_USAGE)
    device = shell.device(args)
    result = trio.run(lambda: device.react(msg_id, args.emoji, remove=args.remove))
    what = f"took back {args.emoji} on {msg_id.hex()}" if args.remove else f"reacted {args.emoji} to {msg_id.hex()}"
    name = group_name_of(device, result.conversation, result.is_group)
    shell.show(args, {**gesture_result_json(result, name), "emoji": args.emoji, "remove": args.remove}, _result_line(result, what, name))


def cmd_edit(args: argparse.Namespace, shell: Shell, text_of: Callable[[str], str]) -> None:
    import trio

    from .cli_groups import group_name_of

    msg_id = message_id_arg(args.message_id, _EDIT_USAGE)
    device = shell.device(args)
    text = text_of(args.text)
    result = trio.run(lambda: device.edit(msg_id, text))
    name = group_name_of(device, result.conversation, result.is_group)
    shell.show(args, gesture_result_json(result, name), _result_line(result, f"edited {msg_id.hex()}", name))


def cmd_delete(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    from .cli_groups import group_name_of

    msg_id = message_id_arg(args.message_id, _DELETE_USAGE)
    device = shell.device(args)
    result = trio.run(lambda: device.delete(msg_id, everyone=args.everyone))
    name = group_name_of(device, result.conversation, result.is_group)
    line = _result_line(result, f"deleted {msg_id.hex()} for everyone", name)
    shell.show(args, {**gesture_result_json(result, name), "everyone": args.everyone}, line)


def add_gesture_commands(sub: argparse._SubParsersAction, shell: Shell, text_of: Callable[[str], str]) -> None:
    """The four commands under the command line's subparsers (client/cli.py build_parser);
    ``text_of`` reads a TEXT argument (``-``: standard input) as ``send`` does."""
    hours = DELETE_WINDOW_MS // 3_600_000
    message_id = {"metavar": "MESSAGE_ID", "help": "the message's id (32 hex digits, as history and recv --json print it)"}
    json_help = "one JSON object: id (the new message's), type, refers_to, to (or group: {id, name}), state, code, message"

    p = sub.add_parser(
        "reply", help="reply to (quote) a message",
        description="Send a text that quotes MESSAGE_ID, in the conversation (1:1 or group) this device keeps it in; a reply to "
        "a reply continues its thread.",
    )  # fmt: skip
    p.add_argument("message_id", **message_id)
    p.add_argument("text", metavar="TEXT", help="the reply; - reads it from standard input")
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(fn=lambda args: cmd_reply(args, shell, text_of))

    p = sub.add_parser("react", help="react to a message with an emoji", description="Add an emoji to MESSAGE_ID (or take it back).")
    p.add_argument("message_id", **message_id)
    p.add_argument("emoji", metavar="EMOJI", help=f"one emoji (at most {MAX_EMOJI_BYTES} bytes, no spaces)")
    p.add_argument("--remove", action="store_true", help="take back this emoji")
    p.add_argument("--json", action="store_true", help=json_help + ", emoji, remove")
    p.set_defaults(fn=lambda args: cmd_react(args, shell))

    p = sub.add_parser(
        "edit", help="change the text of one of your messages",
        description="Send new text for MESSAGE_ID, one of your own messages; everyone's history keeps every version.",
    )  # fmt: skip
    p.add_argument("message_id", **message_id)
    p.add_argument("text", metavar="TEXT", help="the new text; - reads it from standard input")
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(fn=lambda args: cmd_edit(args, shell, text_of))

    p = sub.add_parser(
        "delete", help="delete a message here, or for everyone",
        description=f"Delete MESSAGE_ID on this device only; with --everyone, one of your own messages on every device of "
        f"the conversation, within {hours} hours of it (its text is erased; a 'deleted' placeholder stays).",
    )  # fmt: skip
    p.add_argument("message_id", **message_id)
    p.add_argument("--everyone", action="store_true", help=f"for everyone (your own messages, within {hours} hours)")
    p.add_argument("--json", action="store_true", help=json_help + ", everyone; a delete on this device only has state deleted_here")
    p.set_defaults(fn=lambda args: cmd_delete(args, shell))
