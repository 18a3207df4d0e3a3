"""``sonet``: the device command line (ARCHITECTURE §9)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from sonet.cli_output import emit, emit_error, iso_ms, terminal_safe
from sonet.cli_parse import parse_args
from sonet.cli_version import VersionAction
from sonet.core import limits
from sonet.core.address import parse_address, validate_node_name
from sonet.cli_choices import CRYPTO_MODES
from sonet.core.errors import LocalProtocolError, ProtocolError, sole_exception

# Building the parser (and --help) imports only the cli_* modules, which import what a command
# needs when it runs: the SDK pulls in trio, the network stack, MLS and the device state, ~0.5 s
# of start-up a usage error or --help has no use for.
from .cli_groups import (
    Shell, add_group_commands, group_event_json, group_event_line, group_message_json, group_message_line, group_sent_json, group_sent_line,
    is_group_target, label, send_to_group, typing_in_group,
)  # fmt: skip
from .cli_gestures import add_gesture_commands, gesture_json_fields, gesture_line
from .cli_rich import add_rich_commands
from .cli_call import add_call_command
from .cli_errors import CommandError, positive as _positive, usage_error
from .cli_attachments import add_download_command, add_voice_option, caption_after_options, send_file_command
from .file_fields import file_json, file_summary
from .cli_presence import add_presence_command, presence_line
from .cli_history import add_history_command
from .cli_timer import add_timer_command, timer_json_fields, timer_line
from .node_url import check_node_url

if TYPE_CHECKING:
    from sonet.core.crypto import CryptoMode

    from .live import Received
    from .receiving import ReceiveResult
    from .sdk import Device, Lookup, SendResult
    from .state import Alert, InboxMessage, SentMessage

__all__ = ["main", "CommandError"]

PROG = "sonet"


def _crypto_mode(name: str) -> CryptoMode:
    from sonet.core.crypto import CryptoMode  # (the parser offers the names only: sonet/cli_choices.py)

    return CryptoMode(name)


def _home(args: argparse.Namespace) -> Path:
    from .state import default_home

    return Path(args.home).expanduser() if args.home else default_home()


def _device(args: argparse.Namespace, *, create: bool = False, resume: bool = True) -> Device:
    """The device in ``--home``; only ``register`` and ``link begin`` may ``create`` a new home
    (client/state.py check_home): any other command refuses a home without device state. A
    registration or link that a stopped process left pending (client/pending_registration.py)
    is completed first, unless not to ``resume`` (``register`` and ``link begin`` do it
    themselves)."""
    import trio

    from .pending_registration import has_pending_registration
    from .sdk import Device
    from .state import DeviceState

    args.device = Device(DeviceState(_home(args), create=create))  # main() prints what self-monitoring found
    args.device.say_waiting = _progress  # a connection paced by the node's handshake share is not stuck
    if resume and not create and not args.device.state.registered() and has_pending_registration(args.device.state):
        trio.run(partial(args.device.resume_registration, say=_progress))
    return args.device


def _show(args: argparse.Namespace, obj: dict[str, Any], line: str | None) -> None:
    """One result: a JSON Lines object with ``--json`` (sonet/cli_output.py), else ``line``."""
    if args.json:
        emit(obj)
    elif line is not None:
        print(terminal_safe(line), flush=True)  # message texts and names come from other people


def _on_interrupt(args: argparse.Namespace, explain: Callable[[], str]) -> None:
    """What to say if Ctrl-C stops the command from here on: the state it left things in."""
    args.interrupted = explain


def cmd_register(args: argparse.Namespace) -> None:
    import trio

    from .connection import ConnectError
    from .pending_registration import has_pending_registration

    if args.discard_pending:
        if args.address is not None or args.node is not None or args.invite is not None:  # it does nothing else
            raise usage_error("--discard-pending takes no ADDRESS, --node or --invite", "sonet register --discard-pending")
        _discard_pending(args)
        return
    node_url = check_node_url(args.node) if args.node is not None else None
    missing = [name for name, given in (("ADDRESS", args.address), ("--node", args.node), ("--invite", args.invite)) if given is None]
    if missing:  # only an interrupted registration can be completed without them
        home = _home(args)
        found = _device(args, resume=False) if (home / "state.db").is_file() else None
        if found is None or not has_pending_registration(found.state):
            raise usage_error(
                f"missing {', '.join(missing)}: without them register only completes an interrupted registration, and {home} holds none",
                "sonet register ADDRESS --node URL --invite TOKEN",
            )
        device = found
        address = str(parse_address(args.address)) if args.address is not None else None
        _on_interrupt(args, lambda: _register_interrupted(device))
        profile = trio.run(lambda: device.resume_registration(say=_progress, kind="register", address=address, node_url=node_url))
    else:
        assert node_url is not None
        from sonet.core.invite import parse_invite

        parse_address(args.address)  # a typo is one line, and creates no home
        parse_invite(args.invite)
        device = _device(args, create=True)
        _on_interrupt(args, lambda: _register_interrupted(device))
        try:
            profile = trio.run(lambda: device.register(args.address, node_url, args.invite, mode=_crypto_mode(args.crypto_mode), say=_progress))
        except ConnectError as exc:
            if exc.code != "wrong_identity":
                raise
            raise CommandError(
                "wrong_identity", f"{node_url} is not the node this invite is for ({exc}): check --node, or ask that node's operator for an invite"
            ) from None
    _show(
        args,
        {"address": profile.address, "device": profile.device_id, "fingerprint": profile.identity.public.fingerprint, "node_url": profile.node_url},
        f"registered {profile.address} (device {profile.device_id}) on {profile.node_url}",
    )


def _progress(line: str) -> None:
    """A note on what the command is doing (a lost answer it retries), on stderr."""
    print(f"{PROG}: {line}", file=sys.stderr, flush=True)


def _register_interrupted(device: Device) -> str:
    """The request and its keys are saved before it is sent, and the profile in their place
    in one transaction right after the node's answer (client/pending_registration.py): saved
    means the account exists and this device holds its keys; pending means the node may or may
    not have it, and sending the same request again completes it either way."""
    from .pending_registration import has_pending_registration

    if device.state.registered():
        address = device.state.profile().address
        return f"interrupted after {address} was registered: this device holds its keys; the next `sonet recv` finishes the set-up"
    if has_pending_registration(device.state):
        return (
            "interrupted before this device saved the node's answer: it keeps the request and its keys; `sonet register` (no arguments "
            "needed) or any other command completes the same registration"
        )
    return "interrupted before anything was sent: run the same `sonet register` again"


def _discard_pending(args: argparse.Namespace) -> None:
    device = _device(args, resume=False)
    if device.state.registered():
        raise CommandError("nothing_pending", f"{device.state.home} holds {device.state.profile().address}: nothing is pending")
    what = device.discard_pending_registration()
    if what is None:
        raise CommandError("nothing_pending", f"no interrupted registration or link in {device.state.home}")
    _show(args, {"discarded": what}, f"discarded {what}: its keys are deleted; this home can register or link anew")


def cmd_send(args: argparse.Namespace) -> None:
    import trio

    from .sdk import now_ms

    if args.crypto_mode and is_group_target(args.address):  # with a text or a file alike, quoting the form used
        form = "ADDRESS --file PATH [TEXT] --crypto-mode M" if args.file is not None else "ADDRESS TEXT --crypto-mode M"
        raise usage_error("--crypto-mode is for 1:1 sessions: every group uses the suite 0x004D", f"sonet send {form}")
    if args.file is not None:  # an attachment, TEXT its caption (client/cli_attachments.py)
        caption = _message_text(args.text) if args.text is not None else ""
        send_file_command(args, _SHELL, caption, group=is_group_target(args.address))
        return
    text = _message_text(args.text)  # there is one without --file (client/cli_attachments.py caption_after_options)
    if is_group_target(args.address):  # a group's id or name (client/cli_groups.py)
        send_to_group(args, _SHELL, text)
        return
    device = _device(args)
    started = now_ms()
    _on_interrupt(args, lambda: _send_interrupted(device, args.address, started))
    mode = _crypto_mode(args.crypto_mode) if args.crypto_mode else None
    result = trio.run(lambda: device.send_text(args.address, text, mode=mode))
    _show(
        args,
        {
            "id": result.id.hex(), "to": result.recipient, "devices": result.devices, "own_devices": result.own_devices,
            "accepted_by": result.accepted_by or None, "state": result.state, "code": result.code, "message": result.message,
        },
        _send_line(result),
    )


def _message_text(arg: str) -> str:
    """TEXT, or with ``-`` standard input (one trailing newline dropped, as `echo` adds it);
    longer than the protocol allows is refused, never cut."""
    if arg != "-":
        return arg
    if sys.stdin is None:
        raise CommandError("bad_input", "`-` reads the message from standard input, and there is none")
    if sys.stdin.isatty():
        print("sonet: type the message, then Ctrl-D on a line of its own", file=sys.stderr, flush=True)
    data = sys.stdin.buffer.read(limits.MAX_TEXT_LEN + 3)  # enough to see it is too long
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if len(data) > limits.MAX_TEXT_LEN:
        raise CommandError("bad_input", f"the message on standard input is longer than {limits.MAX_TEXT_LEN} bytes (64 KiB): nothing was sent")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("bad_input", "the message on standard input is not UTF-8 text: nothing was sent") from None


def _send_interrupted(device: Device, recipient: str, started: int) -> str:
    """A sent message is recorded once the home node accepted it (client/sdk.py send_text):
    before that, the node may have stored it or not, and nothing on the device says which."""
    try:
        to = str(parse_address(recipient))
    except ProtocolError:
        return "interrupted: nothing was sent"
    newest = device.state.sent_messages(1)
    if newest and newest[0].to == to and newest[0].sent_at >= started:
        m = newest[0]
        return f"interrupted after the message was recorded (id {m.id.hex()}): `sonet sent` shows it as {m.state}"
    return (
        f"interrupted before the node confirmed the message: it may or may not reach {to}, and `sonet sent` does not list it; "
        "sending it again may deliver it twice"
    )


def _send_line(result: SendResult) -> str:
    if result.state == "pending":  # client/pending.py
        return (
            f"queued on this device: {result.message}; it is sent by itself the next time this device connects "
            f"(`sonet sent` shows it as pending); id {result.id.hex()}"
        )
    plural = "s" if result.devices != 1 else ""
    if result.state == "accepted":
        where = ", the recipient's node"
    else:
        where = f", on its way to {result.recipient.split('@', 1)[1]} (see `sonet sent`)"
    return f"sent to {result.recipient} ({result.devices} device{plural}); id {result.id.hex()}; accepted by {result.accepted_by}{where}"


def cmd_sent(args: argparse.Namespace) -> None:
    """Refreshed from the node (receipts from the mailbox, states from the outbox); when the
    node cannot be reached, the last known state, said so."""
    import trio

    from .connection import ConnectError, NodeError

    device = _device(args)
    try:
        messages = trio.run(lambda: device.sent(args.limit, say=_progress))
        refreshed = True
    except (ConnectError, NodeError, ProtocolError) as exc:
        # the node is down, refuses this device (removed) or answered nonsense: the list is local
        print(f"sonet: warning: could not ask the node ({terminal_safe(str(exc))}); showing the last known state", file=sys.stderr, flush=True)
        messages, refreshed = device.state.all_sent_messages(args.limit), False
    if device.last_receive is not None:
        _receive_warnings(device.last_receive)
        waiting = sum(m.type == "text" for m in device.last_receive.messages) + len(device.last_receive.group_messages)
        if waiting:
            print(f"sonet: {waiting} new message{'s' if waiting != 1 else ''}: `sonet recv` shows {'them' if waiting != 1 else 'it'}", file=sys.stderr)
    for m in messages:
        _show(args, {**_sent_json(m), "refreshed": refreshed}, _sent_line(m))


def _sent_json(m: SentMessage) -> dict[str, Any]:
    if m.group is not None:
        return group_sent_json(m)
    return {
        "id": m.id.hex(), "to": m.to, "sent_at": iso_ms(m.sent_at), "state": m.state, "code": m.code, "message": m.message,
        "delivered_at": iso_ms(m.delivered_at), "read_at": iso_ms(m.read_at),
        **({"type": m.type} if m.type != "text" else {}),  # a reply, reaction, edit or delete says so
    }


def _sent_line(m: SentMessage) -> str:
    if m.group is not None:
        return group_sent_line(m)
    state = m.state
    if m.state in ("delivered", "read"):
        state += f" {iso_ms(m.read_at if m.state == 'read' else m.delivered_at)}"
    elif m.code or m.message:
        state += f": {m.message or m.code}" + (f" ({m.code})" if m.message and m.code else "")
    kind = f" ({m.type})" if m.type != "text" else ""
    return f"[{iso_ms(m.sent_at)}] -> {m.to}{kind}  {state}  id {m.id.hex()}"


def cmd_typing(args: argparse.Namespace) -> None:
    import trio

    if is_group_target(args.address):  # a group's id or name (client/cli_groups.py)
        typing_in_group(args, _SHELL, started=not args.stop)
        return
    device = _device(args)
    trio.run(lambda: device.send_typing(args.address, started=not args.stop))
    _show(args, {"to": str(parse_address(args.address)), "typing": "stopped" if args.stop else "started"}, None)


def _erased(m: InboxMessage) -> bool:
    """A message whose delete for everyone came first, in the same batch or before it
    (client/deletes.py erases its fields): shown as deleted, never as what it was."""
    return not m.fields and m.type not in ("receipt", "presence", "typing")


def _message_json(m: InboxMessage) -> dict[str, Any]:
    from .rich_fields import rich_json  # (the content model: not for building the parser)

    out: dict[str, Any] = {
        "id": m.id.hex(),
        "from": m.sender,
        "sent_at": iso_ms(m.sent_at),
        "received_at": iso_ms(m.received_at),
        "type": m.type,
        "text": m.fields.get("text", ""),
    }
    if m.fields.get("to"):
        out["to"] = m.fields["to"]
    if m.type == "file":  # name, size, sha256, media_type (client/file_fields.py); the id downloads it
        out.update(file_json(m.fields))
    for key in ("receipt", "ids", "typing", "group", "presence"):
        if key in m.fields:
            out[key] = m.fields[key]
    # a reply, reaction, edit, delete: refers_to (client/cli_gestures.py); a timer, a timed message (client/cli_timer.py)
    out.update(rich_json(m.type, m.fields))  # a location, contact, event, poll, vote or call (client/rich_fields.py)
    if _erased(m):
        out["deleted"] = True
    return {**out, **gesture_json_fields(m.fields), **timer_json_fields(m.fields)}


def _message_line(m: InboxMessage) -> str:
    from .rich_fields import rich_line  # (the content model: not for building the parser)

    when = iso_ms(m.sent_at)
    if _erased(m):
        return f"[{when}] {m.sender}: (deleted)"
    # a reply, reaction, edit, delete or timer; a location, contact, event, poll, vote or call (client/rich_fields.py)
    gesture = gesture_line(m.type, m.fields) or timer_line(m.type, m.fields) or rich_line(m.type, m.fields)
    if gesture is not None:
        return f"[{when}] {'you -> ' + m.fields['to'] if m.fields.get('to') else m.sender} {gesture}"
    if m.type == "file":  # client/file_fields.py
        who = f"you -> {m.fields['to']}" if m.fields.get("to") else m.sender
        return f"[{when}] {who} sent {file_summary(m.fields)}; `sonet download {m.id.hex()}` saves it"
    if m.type == "text" and m.fields.get("to"):
        return f"[{when}] you -> {m.fields['to']}: {m.fields['text']}"
    if m.type == "text":
        return f"[{when}] {m.sender}: {m.fields['text']}"
    if m.type == "receipt":
        count = len(m.fields["ids"])
        plural = "s" if count != 1 else ""
        if m.fields["receipt"] == "undelivered":  # client/receiving.py: sent by a device removed since
            return f"[{when}] {m.sender} refused {count} message{plural} from a device of yours removed before they arrived"
        return f"[{when}] {m.sender} {m.fields['receipt']} {count} message{plural}"
    if m.type == "presence":  # client/cli_presence.py
        return presence_line(m)
    where = f" in {label(m.fields['group']['name'], m.fields['group']['id'])}" if "group" in m.fields else ""
    return f"[{when}] {m.sender} {'is typing' if m.fields.get('typing') == 'started' else 'stopped typing'}{where}"


def cmd_recv(args: argparse.Namespace) -> None:
    import trio

    if args.follow:
        _recv_follow(args)
        return
    device = _device(args)
    # what another command's receive stored (a group command receives first) is queued to
    # print as well: no wait for an arrival then
    wait = None if device.state.has_unshown() else args.wait
    result = trio.run(lambda: device.receive(wait=wait, read_receipts=args.read))
    if not _show_received(args, device, result) and not args.json:
        print("no new messages", file=sys.stderr)


def _show_received(args: argparse.Namespace, device: Device, result: ReceiveResult | Received) -> int:
    """Print what ``recv`` prints for ``result``, oldest first, and mark it shown; how many lines."""
    _receive_warnings(result)
    me = device.state.profile().address
    shown: list[tuple[int, int, dict[str, Any], str]] = [(m.received_at, -1, _message_json(m), _message_line(m)) for m in result.messages]
    shown += [(m.received_at, m.seq, group_message_json(m), group_message_line(m)) for m in result.group_messages]
    shown += [(e.received_at, e.seq, group_event_json(e), group_event_line(e, me)) for e in result.group_events]
    for _at, _seq, obj, line in sorted(shown, key=lambda s: s[:2]):  # stable: each list keeps its order
        _show(args, obj, line)
    device.state.mark_shown([m.id for m in result.messages])
    device.state.mark_group_messages_shown([(m.group, m.seq) for m in result.group_messages])
    device.state.mark_group_events_shown([(e.group, e.seq) for e in result.group_events])
    return len(shown)


def _recv_follow(args: argparse.Namespace) -> None:
    """``recv --follow``: one live connection (client/live.py), each event printed as it comes,
    until Ctrl-C (exit 0) or an error that ends it (this device was removed: exit 1)."""
    import trio

    from .live import Notice, Offline, Online, Received

    device = _device(args)

    async def follow() -> None:
        async with device.live(read_receipts=args.read) as session:
            async for event in session.events():
                if isinstance(event, Received):
                    _show_received(args, device, event)
                elif isinstance(event, Online):
                    _show_status(args, {"event": "online", "node": event.node}, f"online: connected to {event.node}")
                elif isinstance(event, Offline):
                    obj = {"event": "offline", "reason": event.reason, "retry_in_s": event.retry_in_s}
                    _show_status(args, obj, f"offline: {event.reason}; trying again in {event.retry_in_s:g} s")
                elif isinstance(event, Notice):
                    print(f"{PROG}: notice: {terminal_safe(event.text)}", file=sys.stderr, flush=True)

    try:
        # Ctrl-C takes effect at the session's next wait, never between a message's line and
        # marking it shown (the next `recv` would show it again) nor inside a batch's storing
        trio.run(follow, restrict_keyboard_interrupt_to_checkpoints=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how it ends
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is None:
            raise


def _show_status(args: argparse.Namespace, obj: dict[str, Any], line: str) -> None:
    """A change of the connection: a JSON line with ``--json``, else a line on stderr."""
    if args.json:
        emit(obj)
    else:
        print(f"{PROG}: {terminal_safe(line)}", file=sys.stderr, flush=True)


def _receive_warnings(result: ReceiveResult | Received) -> None:
    for address in result.identity_changes:
        print(f"warning: the identity key of {address} changed; check `sonet safety-number {address}`", file=sys.stderr)
    for line in result.rejected:
        print(f"warning: {terminal_safe(line)}", file=sys.stderr)


def cmd_chat(args: argparse.Namespace) -> None:
    """The terminal app (client/chat/): imported here only, so other commands start fast."""
    if args.json:
        raise usage_error("sonet chat is interactive: --json does not apply (use `sonet recv --follow --json` for scripts)", "sonet chat [--no-read-receipts]")
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CommandError("no_terminal", "sonet chat needs a terminal (for scripts: `sonet recv --follow`)")
    device = _device(args)
    device.state.profile()  # an unregistered home says so here, before the screen is taken
    from .chat.app import run_chat

    run_chat(device, read_receipts=not args.no_read_receipts)


def cmd_link_begin(args: argparse.Namespace) -> None:
    import trio

    node_url = check_node_url(args.node)
    device = _device(args, create=True)

    def show(code: str) -> None:
        _show(args, {"link_code": code}, code)
        print(f"on an existing device of the account run: sonet link approve {code} (waiting...)", file=sys.stderr, flush=True)

    _on_interrupt(args, lambda: _link_interrupted(device, node_url))
    profile = trio.run(lambda: device.link_begin(node_url, show, mode=_crypto_mode(args.crypto_mode), say=_progress))
    _show(
        args,
        {"address": profile.address, "device": profile.device_id, "fingerprint": profile.identity.public.fingerprint, "node_url": profile.node_url},
        f"linked as {profile.address} device {profile.device_id}",
    )


def _link_interrupted(device: Device, node_url: str) -> str:
    """As for register: the LinkComplete and its keys are saved before they are sent."""
    from .pending_registration import has_pending_registration

    if device.state.registered():
        return f"interrupted after this device was linked to {device.state.profile().address}; the next `sonet recv` finishes the set-up"
    if has_pending_registration(device.state):
        return (
            f"interrupted before this device saved the node's answer: it keeps the request and its keys; `sonet link begin --node {node_url}` "
            "or any other command completes the same link"
        )
    return "interrupted: this device was not linked"


def cmd_link_approve(args: argparse.Namespace) -> None:
    import trio

    device = _device(args)
    trio.run(device.link_approve, args.code)
    _show(args, {"approved": True}, "approved: the new device is completing the link")


def cmd_devices(args: argparse.Namespace) -> None:
    import trio

    from .connection import NodeError

    if args.action == "remove" and args.id is None:
        raise usage_error("devices remove needs the ID of the device (`sonet devices` lists them)", "sonet devices remove ID [--yes]")
    if args.action != "remove" and (args.id is not None or args.yes):  # not a list of one device
        raise usage_error("ID and --yes go with remove", "sonet devices remove ID [--yes]")
    device = _device(args)
    if args.action == "remove":
        profile = device.state.profile()
        this_device = args.id == profile.device_id
        if this_device and not args.yes:
            _confirm_removing_this_device(args.id, profile.address)
        try:
            trio.run(device.remove_device, args.id)
        except NodeError as exc:
            # the node may close this device's connection for good before its answer arrives:
            # that refusal is the confirmation asked for
            if not (this_device and exc.code == "device_removed"):
                raise
        note = f" (this device: it can no longer use {profile.address}; {device.state.home} can be deleted)" if this_device else ""
        _show(args, {"removed": args.id, "this_device": this_device}, f"removed device {args.id}{note}")
        return
    for d in trio.run(device.devices):
        _show(
            args,
            {"id": d.device, "fingerprint": d.fingerprint, "added_at": iso_ms(d.created), "this_device": d.this_device},
            f"{d.device}  {d.fingerprint}  added {iso_ms(d.created)}{'  (this device)' if d.this_device else ''}",
        )


def _confirm_removing_this_device(device_id: int, address: str) -> None:
    """Removing the device in use cuts it off the account for good: the user types its id (or
    passes --yes); without a terminal to ask on, nothing is removed."""
    if sys.stdin is None or not sys.stdin.isatty():
        raise CommandError("not_confirmed", f"device {device_id} is this device: removing it cuts it off {address} for good; add --yes to confirm")
    print(
        f"device {device_id} is the device you are using: removing it cuts it off {address} for good.\n"
        f"type {device_id} to remove it: ",
        end="", file=sys.stderr, flush=True,
    )
    if sys.stdin.readline().strip() != str(device_id):
        raise CommandError("not_confirmed", "not confirmed: nothing was removed")


def cmd_safety_number(args: argparse.Namespace) -> None:
    import trio

    device = _device(args)
    result = trio.run(device.safety_number, args.address)
    if args.json:
        emit({"address": result.address, "safety_number": result.number, "qr": result.qr, "changed": result.changed})
        return
    if result.changed:
        print(f"warning: the identity key of {result.address} changed since you trusted it", file=sys.stderr)
    print(result.number)
    print(f"qr: {result.qr}")


def cmd_trust(args: argparse.Namespace) -> None:
    device = _device(args)
    if not device.trust(args.address):
        raise CommandError("unknown_contact", f"you have not exchanged messages with {args.address} yet")
    address = str(parse_address(args.address))
    _show(args, {"address": address, "trusted": True}, f"trusting the current identity key of {address}")


def cmd_trust_node(args: argparse.Namespace) -> None:
    device = _device(args)
    node = validate_node_name(args.node)  # a typo: bad_address
    if not device.state.forget_node_key(node):
        raise CommandError("unknown_node_key", f"this device has not pinned a key for {node}")
    _show(args, {"node": node, "forgotten": True}, f"forgot the pinned key of {node}: the next one your home node vouches for is pinned")


def cmd_lookup(args: argparse.Namespace) -> None:
    import trio

    device = _device(args)
    found = trio.run(device.lookup, args.address)
    if args.json:
        emit(_lookup_json(found))
        return
    view, proven = found.view, found.checked.proven
    head, previous = proven.head, found.checked.previous
    count = len(view.device_list.devices)
    print(f"{view.address}: identity {view.identity.fingerprint}, {count} device{'s' if count != 1 else ''} (device list version {view.device_list.version})")
    print(f"leaf {proven.index} of {head.node}'s key directory; tree size {head.size}, root {head.root.hex()}, signed {iso_ms(head.at)}")
    print(f"witnesses: {', '.join(found.checked.witnesses) or 'none'}")
    if previous is not None:
        print(f"consistent with the head seen before (tree size {previous.size})")
    if found.identity_changed:
        print(f"warning: the identity key of {view.address} changed since you trusted it", file=sys.stderr)


def _lookup_json(found: Lookup) -> dict[str, Any]:
    checked, view = found.checked, found.view
    entry, head, previous = checked.proven.entry, checked.proven.head, checked.previous
    return {
        "address": view.address,
        "entry": {
            "account": entry.account,
            "identity": entry.identity.hex(),
            "identity_fingerprint": view.identity.fingerprint,
            "device_list": {
                "version": view.device_list.version, "devices": list(view.device_list.devices), "issued_at": iso_ms(view.device_list.issued),
            },
            "prev": entry.prev,
            "logged_at": iso_ms(entry.at),
        },
        "leaf": entry.raw.hex(),
        "leaf_index": checked.proven.index,
        "tree_size": head.size,
        "root_hash": head.root.hex(),
        "inclusion_proof": [h.hex() for h in checked.proof.path],
        "tree_head": {"node": head.node, "tree_size": head.size, "root_hash": head.root.hex(), "signed_at": iso_ms(head.at), "signed_head": head.raw.hex()},
        "cosignatures": [
            {"witness": c.witness, "cosigned_at": iso_ms(c.at), "cosignature": c.raw.hex(), "verified": c.verified} for c in checked.cosignatures
        ],
        "verified": True,
        "consistent_with": {"tree_size": previous.size, "root_hash": previous.root.hex()} if previous is not None else None,
        "identity_changed": found.identity_changed,
    }


def cmd_witness_quorum(args: argparse.Namespace) -> None:
    asked = args.quorum
    if asked is not None and asked != "auto" and not (asked.isascii() and asked.isdigit() and int(asked) <= limits.MAX_COSIGNATURES):
        raise usage_error(f"the witness quorum is a number from 0 to {limits.MAX_COSIGNATURES}, or auto", "sonet witness-quorum [N|auto]")
    state = _device(args).state
    if args.quorum is not None:
        state.set_witness_quorum(None if args.quorum == "auto" else int(args.quorum))
    quorum = state.witness_quorum()
    if quorum is None:
        line = "auto (1 witness cosignature for other nodes' heads, and for the home node's once it has witnesses)"
    else:
        line = f"{quorum} witness cosignature{'s' if quorum != 1 else ''}"
    _show(args, {"quorum": "auto" if quorum is None else quorum}, line)


def cmd_alerts(args: argparse.Namespace) -> None:
    import trio

    from .connection import ConnectError, NodeError

    device = _device(args)
    if device.state.registered():
        try:
            trio.run(device.check)
        except (ConnectError, NodeError, ProtocolError) as exc:
            print(f"sonet: warning: could not check your account's directory entries now: {terminal_safe(str(exc))}", file=sys.stderr)
    alerts = device.state.alerts()
    for a in alerts:
        _show(args, {"id": a.id, "found_at": iso_ms(a.at), "kind": a.kind, "text": a.text}, f"[{iso_ms(a.at)}] {a.kind}: {a.text}")
    if not alerts and not args.json:
        print("no alerts", file=sys.stderr)
    device.state.mark_alerts_shown([a.id for a in alerts])


def _print_alerts(args: argparse.Namespace, *, succeeded: bool) -> None:
    """Alerts and notices found during the command, once each, after its output; and why the
    account's own entries could not be checked, when the command itself went through (after a
    failed command, its one error line says enough)."""
    from .state import ALERT

    device: Device | None = getattr(args, "device", None)
    if device is None:
        return
    if device.monitor_error is not None and succeeded:
        print(f"sonet: warning: could not check your account's key-directory entries now: {terminal_safe(str(device.monitor_error))}", file=sys.stderr)
    for line in device.notices:  # texts that waited on this device and were sent or given up
        print(f"sonet: notice: {terminal_safe(line)}", file=sys.stderr)
    alerts: list[Alert] = device.state.alerts(unshown=True)
    for a in alerts:
        print(f"sonet: {'ALERT' if a.kind == ALERT else 'notice'}: {terminal_safe(a.text)}", file=sys.stderr)
    device.state.mark_alerts_shown([a.id for a in alerts])


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors follow ``--json`` (one JSON line on stdout, exit 2)."""

    def __init__(self, *args: Any, json_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.json_errors = json_errors

    def error(self, message: str) -> NoReturn:
        if self.json_errors:
            emit_error(PROG, "usage", f"{message} (see `{self.prog} --help`)", as_json=True)
            sys.exit(2)
        super().error(message)


def _seconds(text: str) -> float:
    try:
        if not text.isascii():  # float() takes other scripts' digits too
            raise ValueError(text)
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds from 0 up")
    return value


def _add_json(parser: argparse.ArgumentParser, *, json_errors: bool) -> None:
    """Every command takes --json (sonet/cli_output.py): the ones that did not say what it
    prints get the convention; and every parser reports usage errors the way asked."""
    if isinstance(parser, _Parser):
        parser.json_errors = json_errors
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in subparsers:
        for child in action.choices.values():
            _add_json(child, json_errors=json_errors)
    if not subparsers and "--json" not in parser._option_string_actions:
        parser.add_argument("--json", action="store_true", help="JSON Lines: one object per result, errors as one {\"error\": ...} line")


#: what the group commands (client/cli_groups.py) share with the others
_SHELL = Shell(device=_device, show=_show, on_interrupt=_on_interrupt)


def build_parser(*, json_errors: bool = False) -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Sonet device: end-to-end encrypted messaging.")
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument(
        "--home", metavar="DIR",
        help="device state directory (default: $SONET_HOME or the user data dir); only register and link begin create it",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "register",
        help="create an account on a node",
        description="Create an account with this device. The request and its keys are saved before they are sent: if the "
        "command stops before the node's answer, `sonet register` again (no arguments needed) or any other command completes "
        "the same registration.",
    )
    p.add_argument("address", metavar="ADDRESS", nargs="?", help="the new account, user@node")
    p.add_argument("--node", metavar="URL", help="the home node, ws://HOST:PORT or wss://HOST[:PORT]")
    p.add_argument("--invite", metavar="TOKEN", help="token from `sonet-node invite`")
    p.add_argument(
        "--discard-pending", action="store_true",
        help="delete an interrupted registration or link the node refused (its keys were never used), and nothing else",
    )
    p.add_argument("--crypto-mode", choices=CRYPTO_MODES, default="hybrid",
                   help="key types, and the lowest mode this device ever runs a session in (default: hybrid)")
    p.set_defaults(fn=cmd_register)

    p = sub.add_parser(
        "send",
        help="send a text message or a file",
        description=f"Send a text of at most {limits.MAX_TEXT_LEN} bytes of UTF-8 (64 KiB); returns once the home node "
        "stored it durably. A longer text is refused, never cut. To a group: its id or name instead of an address "
        "(`sonet group --help`).",
    )
    p.add_argument("address", metavar="ADDRESS|GROUP", help="recipient, user@node; or a group's id (32 hex digits) or name")
    p.add_argument(
        "text", metavar="TEXT", nargs="?",
        help="the message; - reads it from standard input (one trailing newline dropped); with --file, the file's caption (optional)",
    )  # fmt: skip
    p.add_argument(
        "--file", metavar="PATH",
        help="send this file, encrypted on this device and uploaded to the home node (at most 100 MiB by default; a progress bar "
        "on a terminal); sending the same file again after an interruption resumes its upload",
    )  # fmt: skip
    add_voice_option(p)
    caption_after_options(p)
    p.add_argument(
        "--crypto-mode", choices=CRYPTO_MODES,
        help="the mode of any new session with the recipient's devices (default: what both devices' keys allow); "
        "refused below this device's minimum or its node's; not for groups (their suite is fixed)",
    )
    p.set_defaults(fn=cmd_send)

    p = sub.add_parser(
        "sent",
        help="show what became of sent messages",
        description="List recent sent messages, newest first, with their state: pending (kept on this device: the "
        "recipient's keys could not be fetched; sent by itself the next time the device connects), sent (the home node holds it), "
        "queued (waiting for the recipient's node, with why when known), accepted (the recipient's node holds it), "
        "ordered (a group message the hub put in order), delivered, read, or failed (with why). Messages still on their way are refreshed from the home node.",
    )
    p.add_argument("--limit", type=_positive, default=20, metavar="N", help="how many messages (default 20)")
    p.add_argument(
        "--json", action="store_true",
        help="one JSON object per line: id, to, sent_at, state, code, message, delivered_at, read_at, refreshed "
        "(false: the node could not be reached, this is the last known state), and type for a reply, reaction, edit or delete; "
        "a group message has group ({id, name}) "
        "instead of to, and devices (the other members' devices when it was sent), delivered and read (how many of them)",
    )
    p.set_defaults(fn=cmd_sent)

    p = sub.add_parser("recv", help="receive messages", description="Print new messages, receipts and typing notices, oldest first.")
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--wait", type=_seconds, metavar="SECONDS",
        help="if nothing is queued, wait up to SECONDS for the next arrival (a message, receipt, invitation...)",
    )
    how.add_argument(
        "--follow", action="store_true",
        help="stay connected and print each message as it arrives, until Ctrl-C; reconnects by itself when the node goes "
        "away (saying so on stderr, or as {\"event\": \"offline\"|\"online\", ...} lines with --json)",
    )
    p.add_argument("--read", action="store_true", help="also send read receipts for the messages shown")
    p.add_argument(
        "--json", action="store_true",
        help="one JSON object per line: id, from, sent_at, received_at, type, text; a group message also has group "
        "({id, name}) and device (the sender's); with --follow also {\"event\": \"offline\", \"reason\", \"retry_in_s\"} "
        "and {\"event\": \"online\", \"node\"}",
    )
    p.set_defaults(fn=cmd_recv)

    p = sub.add_parser(
        "typing", help="tell someone you are typing",
        description="Send an ephemeral typing indicator (never stored). To a group: its id or name instead of an address; "
        "it reaches every member, on any node (best effort: dropped, never queued, when a node cannot take it at once).",
    )  # fmt: skip
    p.add_argument("address", metavar="ADDRESS|GROUP")
    p.add_argument("--stop", action="store_true", help="say you stopped typing")
    p.set_defaults(fn=cmd_typing)

    p = sub.add_parser(
        "chat", help="open the chat app (stays connected)",
        description="A terminal chat app on one connection that stays open: conversations and groups, history, messages "
        "as they arrive, typing, delivery and read ticks, safety numbers. F1 in the app lists its keys; Ctrl+Q quits.",
    )  # fmt: skip
    p.add_argument("--no-read-receipts", action="store_true", help="do not tell senders when you read their messages")
    p.add_argument("--json", action="store_true", help="refused (a usage error): the app is interactive; scripts use `sonet recv --follow --json`")
    p.set_defaults(fn=cmd_chat)

    p = sub.add_parser("link", help="add this device to an existing account", description="Link a new device to an account.")
    link = p.add_subparsers(dest="link_command", required=True, metavar="STEP")
    q = link.add_parser("begin", help="on the NEW device: print a code and wait", description="Print a link code on the first line, then wait for approval.")
    q.add_argument("--node", required=True, metavar="URL", help="the account's node, ws://HOST:PORT or wss://HOST[:PORT]")
    q.add_argument("--crypto-mode", choices=CRYPTO_MODES, default="hybrid",
                   help="key types, and the lowest mode this device ever runs a session in (default: hybrid)")
    q.set_defaults(fn=cmd_link_begin)
    q = link.add_parser("approve", help="on an EXISTING device: approve a code", description="Approve the new device that shows CODE.")
    q.add_argument("code", metavar="CODE")
    q.set_defaults(fn=cmd_link_approve)

    p = sub.add_parser("devices", help="list or remove this account's devices", description="List the account's devices, or remove one.")
    p.add_argument("action", nargs="?", choices=("list", "remove"), default="list")
    p.add_argument("id", nargs="?", type=_positive, metavar="ID", help="device id to remove")
    p.add_argument("--yes", action="store_true", help="remove the device you are using without asking")
    p.set_defaults(fn=cmd_devices)

    p = sub.add_parser("safety-number", help="show the safety number with a contact", description="Compare this number with your contact in person or on a call.")
    p.add_argument("address", metavar="ADDRESS")
    p.set_defaults(fn=cmd_safety_number)

    p = sub.add_parser("trust", help="accept a contact's new identity key", description="Accept the identity key a contact has now (after checking the safety number).")
    p.add_argument("address", metavar="ADDRESS")
    p.set_defaults(fn=cmd_trust)

    p = sub.add_parser(
        "trust-node",
        help="accept a node's new identity key",
        description="Forget the identity key this device pinned for NODE (after checking its new fingerprint with its "
        "operator); the next key your home node vouches for is pinned instead.",
    )
    p.add_argument("node", metavar="NODE")
    p.set_defaults(fn=cmd_trust_node)

    p = sub.add_parser(
        "lookup",
        help="show an account's verified key-directory entry",
        description="Look up an account in its node's key directory: the entry, its inclusion proof, the signed tree "
        "head with its witnesses' cosignatures, all verified (and checked consistent with the head seen before).",
    )
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--json", action="store_true", help="one JSON object: entry, leaf, leaf_index, tree_size, root_hash, inclusion_proof, tree_head, cosignatures, ...")
    p.set_defaults(fn=cmd_lookup)

    p = sub.add_parser(
        "witness-quorum",
        help="show or set how many witnesses must cosign a directory head",
        description="A key-directory head is only used when this many witnesses (other nodes) cosigned it. auto: one for "
        "other nodes, and for the home node once it has shown a cosigned head.",
    )
    p.add_argument("quorum", nargs="?", metavar="N|auto", help="the new setting (without it: show the current one)")
    p.set_defaults(fn=cmd_witness_quorum)

    p = sub.add_parser(
        "alerts",
        help="check and list key-directory alerts",
        description="Check this account's key-directory entries with the node, then list every alert (a device or "
        "identity key none of your devices added, a split view) and notice found so far.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per alert: id, found_at, kind, text")
    p.set_defaults(fn=cmd_alerts)

    add_group_commands(sub, _SHELL)
    add_history_command(sub, _SHELL, _positive)
    add_gesture_commands(sub, _SHELL, _message_text)
    add_download_command(sub, _SHELL)
    add_timer_command(sub, _SHELL)
    add_rich_commands(sub, _SHELL)
    add_call_command(sub, _SHELL)
    add_presence_command(sub, _SHELL)
    _add_json(parser, json_errors=json_errors)
    return parser


@cache
def _parser(json_errors: bool) -> argparse.ArgumentParser:
    """``build_parser``'s, built once per process (a parse does not change it): ~7 ms of CPU,
    paid again by every command the tests run in one process."""
    return build_parser(json_errors=json_errors)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(_parser("--json" in argv), argv)
    rc = 1
    try:
        rc = _run(args)
        return rc
    finally:
        _print_alerts(args, succeeded=rc == 0)


def _run(args: argparse.Namespace) -> int:
    """Run the command; a failure is one line (sonet/cli_output.py), never a traceback."""
    from .connection import ConnectError, NodeError
    from .state import StateError
    from .vault import VaultError

    fail = partial(emit_error, PROG, as_json=args.json)
    try:
        _call(args)
    except NodeError as exc:
        fail(exc.code, str(exc) if args.json else f"{exc} ({exc.code})")
        return 1
    except ConnectError as exc:
        fail(exc.code, str(exc))
        return 1
    except (StateError, VaultError) as exc:
        fail("device_state", str(exc))
        return 1
    except (CommandError, LocalProtocolError) as exc:
        fail(exc.code, str(exc))
        return 2 if exc.code == "usage" else 1  # as argparse's own usage errors
    except ProtocolError as exc:  # what a node or contact sent did not verify
        fail(exc.code, str(exc) if args.json else f"{exc} ({exc.code})")
        return 1
    except KeyboardInterrupt:
        fail("interrupted", _interrupted(args))
        return 130
    except BrokenPipeError:
        # the reader went away (`| head`): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


def _call(args: argparse.Namespace) -> None:
    """Run the command with what trio wraps in exception groups unwrapped: Ctrl-C anywhere in
    the group is Ctrl-C, one error alone is that error."""
    try:
        args.fn(args)
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from None
        sole = sole_exception(group)
        if sole is group:
            raise
        raise sole from None


def _interrupted(args: argparse.Namespace) -> str:
    explain: Callable[[], str] | None = getattr(args, "interrupted", None)
    if explain is None:
        return "interrupted"
    try:
        return explain()
    except Exception:  # the state could not be read back: say no more than what is known
        return "interrupted"


if __name__ == "__main__":
    sys.exit(main())
