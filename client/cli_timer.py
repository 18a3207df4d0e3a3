"""``sonet timer ADDRESS DURATION|off`` and how ``recv`` and ``history`` show disappearing
messages (client/timer.py): a timer message as the change it makes, and a timed message's
``expires_at``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from sonet.cli_output import iso_ms
from sonet.core.timer import MAX_TIMER_MS, format_duration, parse_duration

from .cli_errors import as_usage

if TYPE_CHECKING:  # trio and the SDK are imported by the commands that run: `sonet --help` starts fast
    from .cli_groups import Shell
    from .timer import TimerResult

__all__ = ["add_timer_command", "timer_json_fields", "timer_line"]

_USAGE = "sonet timer ADDRESS|GROUP DURATION"


def timer_json_fields(fields: dict) -> dict[str, Any]:
    """The ``recv --json`` / ``history --json`` fields of a timer message (``timer``: ms, 0 for
    off; ``duration``: as typed, e.g. "1h" or "off") and of a timed message (``expires_at``)."""
    out: dict[str, Any] = {}
    if isinstance(fields.get("timer"), int):
        out.update(timer=fields["timer"], duration=format_duration(fields["timer"]))
    if isinstance(fields.get("expires"), int):
        out["expires_at"] = iso_ms(fields["expires"])
    return out


def timer_line(kind: str, fields: dict) -> str | None:
    """What follows the sender in a ``recv`` line for a timer message; None for any other."""
    from .timer import timer_text

    if kind != "timer" or not isinstance(fields.get("timer"), int):
        return None
    return timer_text(fields["timer"])


def _result_json(r: TimerResult, group_name: str | None) -> dict[str, Any]:
    from .cli_groups import conversation_json

    return {
        "id": r.id.hex(), "type": "timer", **conversation_json(r.conversation, group_name), "timer": r.timer,
        "duration": format_duration(r.timer), "state": r.state,
    }  # fmt: skip


def cmd_timer(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    from .cli_groups import conversation_label, group_name_of
    from .timer import timer_text

    with as_usage(_USAGE):  # 31d, soon: before a home is opened
        timer = parse_duration(args.duration)
    device = shell.device(args)
    result = trio.run(lambda: device.set_timer(args.address, timer))
    # named as every other result names a conversation: to ADDRESS, or group {id, name}
    name = group_name_of(device, result.conversation, "@" not in result.conversation)
    where = f"the conversation with {result.conversation}" if name is None else conversation_label(result.conversation, name)
    line = f"{timer_text(timer)} in {where} ({result.state}); id {result.id.hex()}"
    shell.show(args, _result_json(result, name), line)


def add_timer_command(sub: argparse._SubParsersAction, shell: Shell) -> None:
    """``sonet timer`` under the command line's subparsers (client/cli.py build_parser)."""
    p = sub.add_parser(
        "timer", help="set disappearing messages for a conversation or a group",
        description="Set the conversation's timer, for both sides (either may change it; both see the change): every message "
        "written while it is on (texts, replies, reactions, edits, deletes) disappears that long after it was written, from "
        "every node that holds it and from both sides' devices.",
    )  # fmt: skip
    p.add_argument("address", metavar="ADDRESS|GROUP", help="the contact (user@node), or a group (its id or name; any member may set it)")
    p.add_argument("duration", metavar="DURATION", help=f"5s, 10m, 1h, 7d, 2w (at most {format_duration(MAX_TIMER_MS)}), or off")
    p.add_argument("--json", action="store_true", help="one JSON object: id, type (timer), to (or group: {id, name}), timer (ms; 0 for off), duration, state")
    p.set_defaults(fn=lambda args: cmd_timer(args, shell))
