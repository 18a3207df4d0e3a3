"""What the chat app's message cursor does to the selected message (issue 17): which keys apply
to which message, and the one line that says why one does not. The app (client/chat/app.py)
does the rest through the device (client/chat/session.py); nothing here touches the network.

Keys on the selected message: r reply, + react, e edit (own), d delete (own: for everyone
within the window, else on this device only, after a confirmation), s save its file, v vote
in its poll. ``/file PATH [CAPTION]`` in the compose box sends a file."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from sonet.core.content import DELETE_WINDOW_MS

from ..history import HistoryItem
from .compose import COMPOSE_HELP
from .ringing import CALLS_HELP

__all__ = [
    "ACTIONS_HELP", "QUICK_REACTIONS", "FileCommand", "action_refusal", "deletes_for_everyone", "parse_file_command", "my_votes",
]  # fmt: skip

ACTIONS_HELP = [
    ("↑ ↓", "from the compose box: pick a message (↓ past the newest or Esc: back)"),
    ("r + e d", "on a picked message: reply, react, edit yours, delete (asks first)"),
    ("s v", "on a picked message: save its file, vote in its poll"),
    ("/file PATH", "send a file (a caption may follow; quote a path with spaces)"),
    COMPOSE_HELP,
    CALLS_HELP,
]

#: the reaction picker's emoji, on keys 1..8 (any other can be typed)
QUICK_REACTIONS = ("👍", "👎", "😂", "😮", "😢", "🙏", "🎉", "🔥")

#: what each action needs of the message, and what it says when the message has not got it
_EDITABLE = ("text", "reply")


def action_refusal(item: HistoryItem, action: str) -> str | None:
    """Why ``action`` (reply, react, edit, delete, save, vote) cannot be done to ``item``, or None."""
    if item.deleted and action != "delete":
        return "that message was deleted"
    if item.timer is not None and action in ("reply", "react", "edit"):
        return "that is a timer change, not a message"
    if action == "edit":
        if not item.mine:
            return "only its author can edit a message"
        if item.type not in _EDITABLE:
            return f"a {item.type} cannot be edited"
    if action == "save" and item.file is None:
        return "that message has no file to save"
    if action == "vote":
        if item.type != "poll" or item.data is None:
            return "that message is not a poll"
        if item.poll_result is not None and item.poll_result.closed:
            return "that poll is closed"
    return None


def deletes_for_everyone(item: HistoryItem, now_ms: int) -> bool:
    """``d`` deletes an own message for everyone while the window allows it (client/gestures.py
    checks again); anything else only on this device."""
    return item.mine and not item.deleted and now_ms - item.at <= DELETE_WINDOW_MS


def my_votes(item: HistoryItem, me: str) -> set[int]:
    """The options (from 0) this account voted for in a poll, as this device counts them."""
    if item.poll_result is None:
        return set()
    return {n for n, voters in enumerate(item.poll_result.voters) if me in voters}


@dataclass(frozen=True)
class FileCommand:
    path: Path
    caption: str


def parse_file_command(text: str) -> FileCommand | str | None:
    """``/file PATH [CAPTION]`` -> the file to send; a one-line problem (str) when it is
    malformed; None for any other text."""
    if text != "/file" and not text.startswith("/file "):
        return None
    rest = text[len("/file") :].strip()
    if not rest:
        return "/file needs a path: /file PATH [CAPTION]"
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        return f"/file: {exc} (quote a path with spaces: /file 'my photo.jpg')"
    if not words:
        return "/file needs a path: /file PATH [CAPTION]"
    return FileCommand(path=Path(words[0]).expanduser(), caption=" ".join(words[1:]))
