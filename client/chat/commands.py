"""Replies, reactions, edits and deletes typed in the compose box (issue 17): ``/reply TEXT``
and ``/react EMOJI`` (``/unreact EMOJI``) are about the other side's newest message in the open
conversation, ``/edit TEXT`` and ``/delete`` about your own newest one (``/delete`` deletes it
for everyone). Anything else that starts with ``/`` is sent as a text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..history import HistoryItem

__all__ = ["ChatCommand", "parse_command", "command_target", "COMMANDS_HELP"]

COMMANDS_HELP = ("/ commands", "/reply TEXT, /react EMOJI: their last message · /edit TEXT, /delete: yours")

#: command -> whether it takes an argument, and whose newest message it is about
_COMMANDS = {"reply": (True, False), "react": (True, False), "unreact": (True, False), "edit": (True, True), "delete": (False, True)}


@dataclass(frozen=True)
class ChatCommand:
    kind: str  # reply, react, unreact, edit, delete
    arg: str  # the text or emoji ("" for delete)
    mine: bool  # about this account's newest message (else the other side's)


def parse_command(text: str) -> ChatCommand | None:
    """The command ``text`` is, or None (a text to send)."""
    if not text.startswith("/"):
        return None
    name, _, arg = text[1:].partition(" ")
    if name not in _COMMANDS:
        return None
    takes_arg, mine = _COMMANDS[name]
    arg = arg.strip() if name in ("react", "unreact") else arg
    if takes_arg != bool(arg.strip()):
        return None
    return ChatCommand(kind=name, arg=arg, mine=mine)


def command_target(items: Sequence[HistoryItem], command: ChatCommand) -> HistoryItem | None:
    """The newest message shown that ``command`` is about (never a deleted one)."""
    for item in reversed(items):
        if item.mine == command.mine and not item.deleted:
            return item
    return None
