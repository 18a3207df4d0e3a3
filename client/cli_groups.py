"""``sonet group ...`` and ``sonet send GROUP TEXT``: the command line of groups (docs/groups.md).

client/cli.py registers these commands (``add_group_commands``) and hands them the two things
they share with every other command (``Shell``): opening the device of ``--home`` and printing
one result under the ``--json`` convention (sonet/cli_output.py). The work is done by the
``group_*`` methods of ``Device`` (client/sdk.py, client/groups/api.py); this module parses,
checks what can be checked without a node, names groups and prints.

A GROUP argument is a group's id (32 hex digits) or its name on this device. It is resolved
here, before anything is sent, so an unknown or ambiguous name fails at once, offline, and the
change goes to the group that was meant even if a rename arrives while the device syncs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sonet.cli_output import iso_ms
from sonet.core.address import parse_address, validate_node_name
from sonet.core.limits import MAX_GROUP_NAME_LEN, MAX_GROUP_TOPIC_LEN
from sonet.core.errors import LocalProtocolError, ProtocolError

from .cli_gestures import gesture_line
from .cli_timer import timer_json_fields, timer_line
from .file_fields import file_json, file_summary

if TYPE_CHECKING:  # the commands import trio and the SDK when they run: `sonet --help` starts fast
    from .groups.api import GroupInfoView, GroupSendResult, GroupView
    from .groups.events import GroupEvent
    from .groups.store import GroupMessage
    from .groups.typing import GroupTypingResult
    from .sdk import Device
    from .state import SentMessage

__all__ = [
    "Shell",
    "add_group_commands",
    "is_group_target",
    "send_to_group",
    "group_message_json",
    "group_message_line",
    "group_event_json",
    "group_event_line",
    "group_sent_json",
    "group_sent_line",
    "typing_in_group",
    "label",
    "conversation_json",
    "conversation_label",
    "group_name_of",
]


@dataclass(frozen=True)
class Shell:
    """What client/cli.py lends these commands: its device opener, its result printer, and
    where a command says what state a Ctrl-C from then on leaves things in."""

    device: Callable[[argparse.Namespace], Device]
    show: Callable[[argparse.Namespace, dict[str, Any], str | None], None]
    on_interrupt: Callable[[argparse.Namespace, Callable[[], str]], None]


def is_group_target(target: str) -> bool:
    """``sonet send``'s first argument: with an '@' it is an address (user@node), else a group."""
    return "@" not in target


# Names and checks ---------------------------------------------------------------------------


def _addresses(texts: Sequence[str]) -> list[str]:
    """The addresses as the user typed them, each checked (one line naming the bad one)."""
    return [str(parse_address(text)) for text in texts]


def _check_new_name(name: str) -> None:
    if "@" in name:  # `sonet send NAME` would read it as an address
        raise LocalProtocolError(f"a group name cannot contain '@' ({name!r}): `sonet send` would take it for an address", code="bad_input")
    if not 0 < len(name.encode()) <= MAX_GROUP_NAME_LEN:
        raise LocalProtocolError(f"a group name is 1 to {MAX_GROUP_NAME_LEN} bytes of UTF-8", code="bad_input")


def _resolve(device: Device, group: str) -> GroupInfoView:
    """The group named by its id or local name (the SDK's one-line ``unknown_group`` /
    ``ambiguous_group`` errors otherwise); read from this device only."""
    import trio

    return trio.run(lambda: device.group_info(group))


def label(name: str, group_id: str) -> str:
    """How a line names a group: its name and id, or the id alone when it has no name yet."""
    return f'"{name}" ({group_id})' if name else group_id


def _group_ref(name: str, group_id: str) -> dict[str, str]:
    return {"id": group_id, "name": name}


def conversation_json(conversation: str, group_name: str | None) -> dict[str, Any]:
    """How every ``--json`` result names the conversation it went to, one way for all commands:
    ``to`` (the address, as ``send``) for a 1:1 one, ``group`` ({id, name}, as ``recv``) for a
    group; ``group_name`` None for 1:1."""
    return {"to": conversation} if group_name is None else {"group": _group_ref(group_name, conversation)}


def conversation_label(conversation: str, group_name: str | None) -> str:
    """The same in a line: the address, or ``group "name" (id)``."""
    return conversation if group_name is None else f"group {label(group_name, conversation)}"


def group_name_of(device: Device, conversation: str, is_group: bool) -> str | None:
    """The name on this device of the group a result went to; None for a 1:1 conversation."""
    return device.state.group_name(bytes.fromhex(conversation)) if is_group else None


# Output ---------------------------------------------------------------------------------


def group_json(view: GroupView) -> dict[str, Any]:
    return {
        "id": view.id, "name": view.name, "topic": view.topic, "epoch": view.epoch, "hub": view.hub,
        "members": list(view.members), "admins": list(view.admins), "active": view.active, "waiting": view.waiting,
    }  # fmt: skip


def group_info_json(info: GroupInfoView) -> dict[str, Any]:
    return {
        "id": info.id, "name": info.name, "topic": info.topic, "epoch": info.epoch, "hub": info.hub, "suite": info.suite,
        "members": [{"account": m.account, "devices": list(m.devices), "admin": m.admin} for m in info.members],
        "admins": list(info.admins), "active": info.active, "waiting": info.waiting,
    }  # fmt: skip


def _list_line(view: GroupView) -> str:
    count = len(view.members)
    notes = "" if view.active else "  (no longer a member)"
    if view.waiting:
        notes += "  (a change of yours is on its way to the hub)"
    return f"{view.id}  {view.name or '(no name yet)'}  {count} member{'s' if count != 1 else ''}  epoch {view.epoch}  hub {view.hub}{notes}"


def group_info_lines(info: GroupInfoView) -> str:
    lines = [f"group {label(info.name, info.id)}"]
    if info.topic:
        lines.append(f"topic: {info.topic}")
    lines.append(f"hub: {info.hub}  epoch: {info.epoch}  suite: {info.suite}")
    if not info.active:
        lines.append("this device is no longer a member")
    if info.waiting:
        lines.append("a change of this device is on its way to the hub (`sonet recv` finishes it)")
    lines.append(f"members ({len(info.members)}):")
    for m in info.members:
        devices = ", ".join(str(d) for d in m.devices)
        lines.append(f"  {m.account}{' (admin)' if m.admin else ''}  device{'s' if len(m.devices) != 1 else ''} {devices}")
    return "\n".join(lines)


def _change_line(done: str, view: GroupView) -> str:
    """One line for a change: what it did, or that it is still on its way to the hub."""
    if view.waiting:
        return f"{label(view.name, view.id)}: {done} once the hub orders it (still on its way: `sonet recv` finishes it)"
    return f"{label(view.name, view.id)}: {done}; epoch {view.epoch}"


def group_message_json(m: GroupMessage) -> dict[str, Any]:
    """A group message in ``recv --json``: the fields of a 1:1 text, and the group."""
    from .rich_fields import rich_json  # (the content model: not for building the parser)

    return {
        "id": m.id.hex(), "from": m.sender, "device": m.device, "group": _group_ref(m.group_name, m.group.hex()),
        "sent_at": iso_ms(m.sent_at), "received_at": iso_ms(m.received_at), "type": m.type, "text": m.text,
        **{key: m.fields[key] for key in ("refers_to", "emoji", "remove") if key in m.fields},  # issue 17 (client/cli_gestures.py)
        **(file_json(m.fields) if m.type == "file" else {}),  # name, size, sha256, media_type (client/file_fields.py)
        **rich_json(m.type, m.fields),  # a location, contact, event, poll or vote (client/rich_fields.py)
        **timer_json_fields(m.fields),  # a timer, a timed message's expires_at (client/cli_timer.py)
    }  # fmt: skip


def group_message_line(m: GroupMessage) -> str:
    from .rich_fields import rich_line  # (the content model: not for building the parser)

    where = f"[{iso_ms(m.sent_at)}] {m.sender} in {label(m.group_name, m.group.hex())}"
    if m.type == "text":
        return f"{where}: {m.text}"
    if m.type == "file":  # client/file_fields.py
        return f"{where} sent {file_summary({**m.fields, 'text': m.text})}; `sonet download {m.id.hex()}` saves it"
    fields = {**m.fields, "text": m.text}
    return f"{where} {gesture_line(m.type, fields) or timer_line(m.type, fields) or rich_line(m.type, fields) or m.text}"


def group_event_json(e: GroupEvent) -> dict[str, Any]:
    """A membership event in ``recv --json`` (client/groups/events.py): ``event`` is added,
    removed, left, admin, hub, renamed or topic; the fields that do not apply are null."""
    return {
        "type": "group_event", "event": e.event, "group": _group_ref(e.group_name, e.group.hex()), "seq": e.seq, "by": e.by,
        "member": e.member, "hub": e.hub, "name": e.name, "topic": e.topic, "received_at": iso_ms(e.received_at),
    }  # fmt: skip


def group_event_line(e: GroupEvent, me: str) -> str:
    """One line for a membership event; ``me``: this device's account ("you")."""
    from .groups.events import ADDED, ADMIN, HUB, LEFT, REMOVED, RENAMED

    where, by = label(e.group_name, e.group.hex()), e.by or "a member"
    member = "you" if e.member == me else e.member
    if e.event == ADDED:
        what = f"you were added to {where} by {by}" if e.member == me else f"{by} added {member} to {where}"
    elif e.event == REMOVED:
        what = f"you were removed from {where} by {by}" if e.member == me else f"{by} removed {member} from {where}"
    elif e.event == LEFT:
        what = f"{member} left {where}"
    elif e.event == ADMIN:
        what = f"{by} made {member} an admin of {where}"
    elif e.event == HUB:
        what = f"{by} moved the hub of {where} to {e.hub}"
    elif e.event == RENAMED and not e.before:  # the name that came after a line showed the group by its id
        what = f"{by} named {e.group.hex()} {e.name!r}"
    elif e.event == RENAMED:
        what = f"{by} renamed {label(e.before or '', e.group.hex())} to {e.name!r}"
    else:
        what = f"{by} set the topic of {where} to {e.topic!r}" if e.topic else f"{by} cleared the topic of {where}"
    return f"[{iso_ms(e.received_at)}] {what}"


def group_sent_json(m: SentMessage) -> dict[str, Any]:
    """A group text in ``sent --json``: ``group`` instead of ``to``, and how many of the other
    members' devices (``devices``, when it was sent) have it (``delivered``) and read it."""
    assert m.group is not None
    return {
        "id": m.id.hex(), "group": _group_ref(m.group_name, m.group.hex()), "sent_at": iso_ms(m.sent_at), "state": m.state,
        "code": m.code, "message": m.message, "devices": m.devices, "delivered": m.delivered, "read": m.read,
        "delivered_at": iso_ms(m.delivered_at), "read_at": iso_ms(m.read_at),
        **({"type": m.type} if m.type != "text" else {}),  # a reply, reaction, edit or delete says so
    }  # fmt: skip


def group_sent_line(m: SentMessage) -> str:
    assert m.group is not None
    state = f"{m.state}: {m.message} ({m.code})" if m.state == "failed" else m.state
    if m.devices:
        state += f", delivered to {m.delivered} of {m.devices} devices, read on {m.read}"
    kind = f" ({m.type})" if m.type != "text" else ""
    return f"[{iso_ms(m.sent_at)}] -> {label(m.group_name, m.group.hex())}{kind}  {state}  id {m.id.hex()}"


def _typing_json(result: GroupTypingResult) -> dict[str, Any]:
    return {"group": _group_ref(result.name, result.group), "typing": result.typing, "devices": result.devices, "elsewhere": result.elsewhere}


def _send_json(result: GroupSendResult, name: str) -> dict[str, Any]:
    return {
        "id": result.id.hex(), **conversation_json(result.group, name), "state": result.state, "code": result.code, "message": result.message,
    }  # fmt: skip


def _send_line(result: GroupSendResult, name: str) -> str:
    where = label(name, result.group)
    if result.state == "pending":  # kept on this device, as a 1:1 text (client/cli.py _send_line)
        return (
            f"queued on this device: {result.message}; it is sent by itself the next time this device connects "
            f"(`sonet sent` shows it as pending); id {result.id.hex()}"
        )
    if result.state == "queued":
        return f"sent to {where}: on its way to the group's hub (it reaches the members once the hub orders it); id {result.id.hex()}"
    return f"sent to {where}: the hub ordered it for every member; id {result.id.hex()}"


# Commands -------------------------------------------------------------------------------


def send_to_group(args: argparse.Namespace, shell: Shell, text: str) -> None:
    """``sonet send GROUP TEXT`` (client/cli.py's cmd_send hands a GROUP over)."""
    import trio

    device = shell.device(args)
    try:
        info = _resolve(device, args.address)
    except LocalProtocolError as exc:
        if exc.code != "unknown_group":
            raise
        try:  # not a group: perhaps an address missing its '@node'; say both
            parse_address(args.address)
        except ProtocolError as bad:
            raise LocalProtocolError(f"{exc}; as an address: {bad}", code="unknown_group") from None
        raise
    result = trio.run(lambda: device.group_send(info.id, text))
    shell.show(args, _send_json(result, info.name), _send_line(result, info.name))


def typing_in_group(args: argparse.Namespace, shell: Shell, *, started: bool) -> None:
    """``sonet typing GROUP`` (client/cli.py's cmd_typing hands a GROUP over)."""
    import trio

    device = shell.device(args)
    info = _resolve(device, args.address)
    result = trio.run(lambda: device.group_typing(info.id, started=started))
    line = None  # like typing to an address: nothing to say when it went to everyone it can
    if result.elsewhere:
        line = (
            f"typing in {label(info.name, info.id)}: told {result.devices} member device{'s' if result.devices != 1 else ''}; "
            f"{result.elsewhere} could not be told now"
        )
    shell.show(args, _typing_json(result), line)


def cmd_create(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    _check_new_name(args.name)
    members = _addresses(args.members)
    device = shell.device(args)
    view = trio.run(lambda: device.group_create(args.name, members))
    me = device.state.profile().address
    others = [m for m in view.members if m != me]
    not_added = _not_added(members, view, me)
    done = f"created with {', '.join(others)}" if others else "created with only you in it"
    shell.show(args, {**group_json(view), "not_added": not_added}, _change_line(f"{done}{_no_keys(not_added)}, hub {view.hub}", view))


def _not_added(members: list[str], view: GroupView, me: str) -> list[str]:
    """The accounts none of whose devices has published KeyPackages yet: the SDK leaves them
    out. Unknown while the change waits for the hub (the members are the last epoch's)."""
    return [] if view.waiting else sorted({m for m in members if m != me and m not in view.members})


def _keyless(accounts: list[str]) -> str:
    return f"{', '.join(accounts)}: no group keys yet, published by their next `sonet recv`; add them then"


def _no_keys(accounts: list[str]) -> str:
    return f" ({_keyless(accounts)})" if accounts else ""


def cmd_add(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    members = _addresses(args.members)
    device = shell.device(args)
    info = _resolve(device, args.group)
    try:
        view = trio.run(lambda: device.group_add(info.id, members))
    except LocalProtocolError as exc:
        if exc.code != "nothing_to_do":
            raise
        # the SDK cannot tell the two apart; the group as it was before can
        present = {m.account for m in info.members}
        missing = sorted({m for m in members if m not in present})
        already = sorted({m for m in members if m in present})
        why = [_keyless(missing)] if missing else []
        why += [f"{', '.join(already)}: in the group already, with every device"] if already else []
        raise LocalProtocolError(f"nothing to add ({'; '.join(why)})", code="nothing_to_do") from None
    not_added = _not_added(members, view, device.state.profile().address)
    added = [m for m in members if m not in not_added]
    line = _change_line(f"added {', '.join(added)}{_no_keys(not_added)}", view)
    shell.show(args, {**group_json(view), "not_added": not_added}, line)


def cmd_remove(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    [member] = _addresses([args.member])
    device = shell.device(args)
    info = _resolve(device, args.group)
    view = trio.run(lambda: device.group_remove(info.id, member))
    shell.show(args, group_json(view), _change_line(f"removed {member}", view))


def cmd_leave(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    device = shell.device(args)
    info = _resolve(device, args.group)
    closed = trio.run(lambda: device.group_leave(info.id))
    why = "you were its only member: it is closed" if closed else "the other members' devices remove your devices from it"
    shell.show(args, {"group": _group_ref(info.name, info.id), "left": True, "closed": closed}, f"left {label(info.name, info.id)}: {why}")


def cmd_admin(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    [member] = _addresses([args.member])
    device = shell.device(args)
    info = _resolve(device, args.group)
    view = trio.run(lambda: device.group_admin(info.id, member))
    shell.show(args, group_json(view), _change_line(f"{member} is an admin", view))


def cmd_hub(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    node = validate_node_name(args.node)
    device = shell.device(args)
    info = _resolve(device, args.group)
    view = trio.run(lambda: device.group_hub(info.id, node))
    shell.show(args, group_json(view), _change_line(f"the hub is {node}", view))


def cmd_rename(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    _check_new_name(args.name)
    device = shell.device(args)
    info = _resolve(device, args.group)
    view = trio.run(lambda: device.group_set(info.id, name=args.name))
    shell.show(args, group_json(view), _change_line(f"renamed {args.name!r}", view))


def cmd_topic(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    device = shell.device(args)
    info = _resolve(device, args.group)
    view = trio.run(lambda: device.group_set(info.id, topic=args.text))
    shell.show(args, group_json(view), _change_line(f"topic {args.text!r}", view))


def cmd_list(args: argparse.Namespace, shell: Shell) -> None:
    import trio

    device = shell.device(args)
    views = trio.run(device.groups)
    for view in views:
        shell.show(args, group_json(view), _list_line(view))
    if not views and not args.json:  # with --json: zero groups, zero lines
        print("no groups (`sonet group create NAME` makes one)", file=sys.stderr)


def cmd_info(args: argparse.Namespace, shell: Shell) -> None:
    info = _resolve(shell.device(args), args.group)
    shell.show(args, group_info_json(info), group_info_lines(info))


# Parser ---------------------------------------------------------------------------------

_GROUP_ARG = "the group: its id (32 hex digits) or its name on this device"


def add_group_commands(sub: argparse._SubParsersAction, shell: Shell) -> None:
    """``sonet group ...`` under the command line's subparsers (client/cli.py build_parser)."""

    def command(name: str, fn: Callable[[argparse.Namespace, Shell], None], **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(name, **kwargs)
        parser.set_defaults(fn=lambda args: fn(args, shell))
        return parser

    p = sub.add_parser(
        "group",
        help="create and run group conversations",
        description="End-to-end encrypted groups (MLS): every device of every member is in the group; the group's hub node "
        "puts every message and change in one order for all. A GROUP is a group's id (32 hex digits) or its name on this "
        "device. `sonet send GROUP TEXT` writes to a group; `sonet recv` shows its messages.",
    )
    group = p.add_subparsers(dest="group_command", required=True, metavar="ACTION")

    q = command(
        "create", cmd_create,
        help="create a group (your home node is its hub)",
        description="Create a group with you as its admin and your home node as its hub, and add every device of each "
        "ADDRESS that has published group keys (a device does with its first `sonet recv`); the others are named, to be "
        "added later with `sonet group add`.",
    )  # fmt: skip
    q.add_argument("name", metavar="NAME", help=f"the group's name (1 to {MAX_GROUP_NAME_LEN} bytes, no '@'), seen by every member")
    # default=[]: else argparse names ADDRESS among the missing ones when NAME is missing
    q.add_argument("members", metavar="ADDRESS", nargs="*", default=[], help="members to add, user@node")

    q = command("add", cmd_add, help="add members (admins)", description="Add every device of each ADDRESS to the group (admins only).")
    q.add_argument("group", metavar="GROUP", help=_GROUP_ARG)
    q.add_argument("members", metavar="ADDRESS", nargs="+", help="members to add, user@node")

    q = command(
        "remove", cmd_remove,
        help="remove a member (admins)",
        description="Remove every device of ADDRESS from the group (admins only); it cannot read what is sent after.",
    )  # fmt: skip
    q.add_argument("group", metavar="GROUP", help=_GROUP_ARG)
    q.add_argument("member", metavar="ADDRESS", help="the member to remove, user@node")

    q = command(
        "leave", cmd_leave,
        help="leave a group",
        description="Leave the group: your devices ask to be removed, and the other members' devices remove them. The last "
        "admin must name another admin first (`sonet group admin`). The group's only member closes it so (on its devices).",

    )  # fmt: skip
    q.add_argument("group", metavar="GROUP", help=_GROUP_ARG)

    command("list", cmd_list, help="list this device's groups", description="One line per group: id, name, members, epoch, hub.")

    q = command(
        "info", cmd_info,
        help="show a group's members, admins and state",
        description="Show a group as this device knows it: name, topic, hub, epoch, cipher suite, and every member with "
        "its devices and whether it is an admin. Read from this device; nothing is sent.",
    )  # fmt: skip
    q.add_argument("group", metavar="GROUP", help=_GROUP_ARG)

    q = command("admin", cmd_admin, help="make a member an admin (admins)", description="Make ADDRESS an admin of the group (admins only).")
    q.add_argument("group", metavar="GROUP", help=_GROUP_ARG)
    q.add_argument("member", metavar="ADDRESS", help="the member, user@node")

    q = command(
        "hub", cmd_hub,
        help="move the group's hub to another node (admins)",
        description="Hand the group over to NODE, a node of one of its members (admins only): it orders the group's "
        "messages from then on; nothing in flight is lost.",
    )  # fmt: skip
    q.add_argument("group", metavar="GROUP", help=_GROUP_ARG)
    q.add_argument("node", metavar="NODE", help="the new hub, a node name like beta.example")

    q = command(
        "rename", cmd_rename, help="rename the group (admins)",
        description="Give the group a new name (admins only), sent end-to-end encrypted to every member.",
    )  # fmt: skip
    q.add_argument("group", metavar="GROUP", help=_GROUP_ARG)
    q.add_argument("name", metavar="NAME", help=f"the new name (1 to {MAX_GROUP_NAME_LEN} bytes, no '@')")

    q = command(
        "topic", cmd_topic, help="set the group's topic (admins)",
        description="Set the group's topic (admins only; empty clears it), sent end-to-end encrypted to every member.",
    )  # fmt: skip
    q.add_argument("group", metavar="GROUP", help=_GROUP_ARG)
    q.add_argument("text", metavar="TEXT", help=f"the topic (at most {MAX_GROUP_TOPIC_LEN} bytes)")
