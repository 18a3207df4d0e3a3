"""``sonet history ADDRESS|GROUP [--limit N] [--json]``: a conversation as this device keeps it
(client/history.py), oldest first, read from the device alone (no connection: it works with
the node down). One line per message; with ``--json`` one object: id, from, to (1:1) or group
({id, name}), sent_at, type, text, state, note, mine, and what replies, reactions, edits and deletes
made of it: refers_to, quote, thread, edited, versions, reactions, deleted."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sonet.cli_output import iso_ms, terminal_safe
from sonet.core.errors import DecryptError

from .cli_gestures import history_extra_json, history_marks
from .cli_groups import conversation_json, label
from .cli_timer import timer_json_fields
from .file_fields import file_json, file_summary
from .cli_rich import rich_history_json, rich_history_text

if TYPE_CHECKING:  # the SDK is imported by the command when it runs: `sonet --help` starts fast
    from .cli_groups import Shell
    from .history import HistoryItem

__all__ = ["add_history_command", "history_json", "history_line"]


def history_json(item: HistoryItem, *, me: str, group_name: str | None) -> dict[str, Any]:
    """``group_name``: None in a 1:1 conversation."""
    out: dict[str, Any] = {
        "id": item.id.hex(), "from": item.sender, "sent_at": iso_ms(item.at), "type": item.type, "text": item.text,
        "state": item.state, "note": item.note, "mine": item.mine, **history_extra_json(item),
        **timer_json_fields({"timer": item.timer, "expires": item.expires}),  # client/cli_timer.py
        **(file_json({"file": item.file}) if item.file else {}),  # name, size, sha256, media_type (client/file_fields.py)
        **rich_history_json(item),  # a location, contact card, event, poll and its result (client/cli_rich.py)
    }  # fmt: skip
    if group_name is None:
        out["to"] = item.conversation if item.mine else me
    else:
        out.update(conversation_json(item.conversation, group_name))
    return out


def history_line(item: HistoryItem, *, group_name: str | None) -> str:
    from .timer import timer_text

    where = f" in {label(group_name, item.conversation)}" if group_name is not None else ""
    who = f"you -> {item.conversation}" if item.mine and group_name is None else "you" if item.mine else item.sender
    state = f"{item.state}: {item.note}" if item.note else item.state
    before, after = history_marks(item)  # a reply's quote; edited, reactions (client/cli_gestures.py)
    text = "(deleted)" if item.deleted else timer_text(item.timer) if item.timer is not None else rich_history_text(item) or item.text
    if item.file and not item.deleted:  # client/file_fields.py
        text = file_summary({"file": item.file, "text": item.text})
    return f"[{iso_ms(item.at)}] {who}{where}: {before}{text}{after}  ({state}; id {item.id.hex()})"


def cmd_history(args: argparse.Namespace, shell: Shell) -> None:
    from .history import History
    from .state import StateError

    state = shell.device(args).state
    history = History(state)
    key = history.resolve(args.conversation)
    group_name = None if "@" in key else state.group_name(bytes.fromhex(key))
    me = state.profile().address
    try:
        items = history.messages(key, limit=args.limit)
    except DecryptError:
        raise StateError(f"a message kept of this conversation does not open: {state.home / 'state.db'} was changed outside sonet") from None
    for item in items:
        shell.show(args, history_json(item, me=me, group_name=group_name), history_line(item, group_name=group_name))
    if not items and not args.json:
        print(f"no messages with {key if group_name is None else terminal_safe(label(group_name, key))} on this device", file=sys.stderr)


def add_history_command(sub: argparse._SubParsersAction, shell: Shell, positive: Callable[[str], int]) -> None:
    """``sonet history`` under the command line's subparsers (client/cli.py build_parser);
    ``positive`` parses --limit."""
    p = sub.add_parser(
        "history",
        help="show a conversation kept on this device",
        description="Print the newest messages of a conversation (yours, from any of your devices, and those received), oldest "
        "first, with each one's state: pending, sent, accepted, queued, ordered, delivered, read or failed (with why) for yours; "
        "received or read for the others'. Read from this device alone: `sonet recv` fetches new ones.",
    )
    p.add_argument("conversation", metavar="ADDRESS|GROUP", help="a contact, user@node; or a group's id (32 hex digits) or name")
    p.add_argument("--limit", type=positive, default=50, metavar="N", help="how many messages (default 50)")
    p.add_argument(
        "--json", action="store_true",
        help="one JSON object per message: id, from, to (or group: {id, name}), sent_at, type (text or reply), text, state, "
        "note (why it is pending, queued or failed), mine, refers_to and quote (a reply's), thread, edited (how many times), "
        "versions (the texts before), reactions ([{emoji, count, mine}]), deleted",
    )
    p.set_defaults(fn=lambda args: cmd_history(args, shell))
