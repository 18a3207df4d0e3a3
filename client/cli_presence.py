"""``sonet presence [on|off] [--to ADDRESS...]`` and how ``recv`` prints a contact's presence
(client/presence.py: opt-in, off by default; a live session - ``recv --follow``, ``chat`` -
sends it)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from sonet.cli_output import iso_ms

from .cli_errors import usage_error
from .presence import MAX_PRESENCE_CONTACTS, PRESENCE_REFRESH_S, presence_targets

if TYPE_CHECKING:  # the SDK is imported by the command when it runs: `sonet --help` starts fast
    from .cli_groups import Shell
    from .state import InboxMessage

__all__ = ["add_presence_command", "presence_line"]


def presence_line(m: InboxMessage) -> str:
    """``recv``'s line for a received presence."""
    if m.fields.get("presence") == "online":
        return f"[{iso_ms(m.sent_at)}] {m.sender} is online"
    return f"[{iso_ms(m.sent_at)}] {m.sender} went offline (last seen {iso_ms(m.sent_at)})"


def cmd_presence(args: argparse.Namespace, shell: Shell) -> None:
    if args.to and args.state != "on":
        raise usage_error("--to goes with on", "sonet presence on --to ADDRESS...")
    device = shell.device(args)
    if args.state is None:
        setting = device.presence()
    else:
        setting = device.set_presence(args.state == "on", to=args.to or ())
    targets = presence_targets(device.state)
    # "to" names a conversation in every command's JSON (sonet/cli_output.py): these are contacts
    obj: dict[str, Any] = {"presence": "on" if setting.on else "off", "contacts": targets, "all_contacts": setting.on and not setting.to}
    if not setting.on:
        line = "presence is off: your devices share it with nobody"
    elif not targets:
        line = "presence is on for every contact you have a conversation with (none yet)"
    else:
        who = "every contact you have a conversation with" if not setting.to else "only these contacts"
        line = f"presence is on for {who}: {', '.join(targets)} (sent while a live session runs: recv --follow, chat)"
    shell.show(args, obj, line)


def add_presence_command(sub: argparse._SubParsersAction, shell: Shell) -> None:
    """``sonet presence`` under the command line's subparsers (client/cli.py build_parser)."""
    p = sub.add_parser(
        "presence", help="share your presence (online, last seen) with contacts, or stop",
        description="Presence is off until you turn it on. With it on, a live session (recv --follow, chat) tells the contacts "
        f"you allow that you are online when it connects and every {PRESENCE_REFRESH_S / 60:g} minutes, and that you went "
        "offline when it closes; end to end encrypted, never stored on a node. Without --to: every contact you have a 1:1 "
        f"conversation with (at most {MAX_PRESENCE_CONTACTS}); --to replaces the list. Without on|off: show the setting.",
    )  # fmt: skip
    p.add_argument("state", nargs="?", choices=("on", "off"), metavar="on|off", help="turn presence on or off")
    p.add_argument("--to", nargs="+", metavar="ADDRESS", help="share only with these contacts (user@node)")
    p.add_argument("--json", action="store_true", help="one JSON object: presence (on|off), contacts (who gets it now), all_contacts")
    p.set_defaults(fn=lambda args: cmd_presence(args, shell))
