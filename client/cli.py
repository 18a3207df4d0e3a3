"""``sonet``: the device command line (ARCHITECTURE §9)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import trio

from sonet.core import limits
from sonet.core.address import validate_node_name
from sonet.core.crypto import CryptoMode
from sonet.core.errors import LocalProtocolError, ProtocolError

from .connection import ConnectError, NodeError
from .vault import VaultError
from .sdk import Device, Lookup, SendResult
from .state import ALERT, Alert, DeviceState, InboxMessage, SentMessage, StateError, default_home

__all__ = ["main"]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _device(args: argparse.Namespace) -> Device:
    home = Path(args.home).expanduser() if args.home else default_home()
    args.device = Device(DeviceState(home))  # main() prints what self-monitoring found
    return args.device


def cmd_register(args: argparse.Namespace) -> None:
    device = _device(args)
    profile = trio.run(lambda: device.register(args.address, args.node, args.invite, mode=CryptoMode(args.crypto_mode)))
    if args.json:
        print(json.dumps({"address": profile.address, "device": profile.device_id, "fingerprint": profile.identity.public.fingerprint}))
    else:
        print(f"registered {profile.address} (device {profile.device_id}) on {profile.node_url}")


def cmd_send(args: argparse.Namespace) -> None:
    device = _device(args)
    result = trio.run(device.send_text, args.address, args.text)
    if args.json:
        print(json.dumps({
            "id": result.id.hex(), "to": result.recipient, "devices": result.devices, "own_devices": result.own_devices,
            "status": "pending" if result.state == "pending" else "accepted", "accepted_by": result.accepted_by or None,
            "state": result.state, "code": result.code, "message": result.message,
        }))
    else:
        print(_send_line(result))


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
    device = _device(args)
    for m in trio.run(lambda: device.sent(args.limit)):
        print(_sent_json(m) if args.json else _sent_line(m), flush=True)


def _sent_json(m: SentMessage) -> str:
    return json.dumps({
        "id": m.id.hex(), "to": m.to, "sent_at": _iso(m.sent_at), "state": m.state, "code": m.code, "message": m.message,
        "delivered_at": _iso(m.delivered_at) if m.delivered_at is not None else None,
        "read_at": _iso(m.read_at) if m.read_at is not None else None,
    })


def _sent_line(m: SentMessage) -> str:
    state = m.state
    if m.state in ("delivered", "read"):
        state += f" {_iso(m.read_at if m.state == 'read' else m.delivered_at)}"  # type: ignore[arg-type]
    elif m.code or m.message:
        state += f": {m.message or m.code}" + (f" ({m.code})" if m.message and m.code else "")
    return f"[{_iso(m.sent_at)}] -> {m.to}  {state}  id {m.id.hex()}"


def cmd_typing(args: argparse.Namespace) -> None:
    device = _device(args)
    trio.run(lambda: device.send_typing(args.address, started=not args.stop))


def _message_json(m: InboxMessage) -> str:
    out = {
        "id": m.id.hex(),
        "from": m.sender,
        "sent_at": _iso(m.sent_at),
        "received_at": _iso(m.received_at),
        "type": m.type,
        "text": m.fields.get("text", ""),
    }
    if m.fields.get("to"):
        out["to"] = m.fields["to"]
    for key in ("receipt", "ids", "typing"):
        if key in m.fields:
            out[key] = m.fields[key]
    return json.dumps(out, ensure_ascii=False)


def _message_line(m: InboxMessage) -> str:
    when = _iso(m.sent_at)
    if m.type == "text" and m.fields.get("to"):
        return f"[{when}] you -> {m.fields['to']}: {m.fields['text']}"
    if m.type == "text":
        return f"[{when}] {m.sender}: {m.fields['text']}"
    if m.type == "receipt":
        count = len(m.fields["ids"])
        return f"[{when}] {m.sender} {m.fields['receipt']} {count} message{'s' if count != 1 else ''}"
    return f"[{when}] {m.sender} {'is typing' if m.fields.get('typing') == 'started' else 'stopped typing'}"


def cmd_recv(args: argparse.Namespace) -> None:
    device = _device(args)
    result = trio.run(lambda: device.receive(wait=args.wait, read_receipts=args.read))
    for address in result.identity_changes:
        print(f"warning: the identity key of {address} changed; check `sonet safety-number {address}`", file=sys.stderr)
    for line in result.rejected:
        print(f"warning: {line}", file=sys.stderr)
    for m in result.messages:
        print(_message_json(m) if args.json else _message_line(m), flush=True)
    device.state.mark_shown([m.id for m in result.messages])
    if not result.messages and not args.json:
        print("no new messages", file=sys.stderr)


def cmd_link_begin(args: argparse.Namespace) -> None:
    device = _device(args)

    def show(code: str) -> None:
        print(code, flush=True)
        print("on an existing device of the account run: sonet link approve CODE (waiting...)", file=sys.stderr, flush=True)

    profile = trio.run(lambda: device.link_begin(args.node, show, mode=CryptoMode(args.crypto_mode)))
    print(f"linked as {profile.address} device {profile.device_id}", flush=True)


def cmd_link_approve(args: argparse.Namespace) -> None:
    device = _device(args)
    trio.run(device.link_approve, args.code)
    print("approved: the new device is completing the link")


def cmd_devices(args: argparse.Namespace) -> None:
    device = _device(args)
    if args.action == "remove":
        if args.id is None:
            raise LocalProtocolError("usage: sonet devices remove ID")
        trio.run(device.remove_device, args.id)
        print(f"removed device {args.id}")
        return
    devices = trio.run(device.devices)
    if args.json:
        print(json.dumps([{"id": d.device, "fingerprint": d.fingerprint, "created": _iso(d.created), "this_device": d.this_device} for d in devices]))
        return
    for d in devices:
        print(f"{d.device}  {d.fingerprint}  added {_iso(d.created)}{'  (this device)' if d.this_device else ''}")


def cmd_safety_number(args: argparse.Namespace) -> None:
    device = _device(args)
    result = trio.run(device.safety_number, args.address)
    if args.json:
        print(json.dumps({"address": result.address, "safety_number": result.number, "qr": result.qr, "changed": result.changed}))
        return
    if result.changed:
        print(f"warning: the identity key of {result.address} changed since you trusted it", file=sys.stderr)
    print(result.number)
    print(f"qr: {result.qr}")


def cmd_trust(args: argparse.Namespace) -> None:
    device = _device(args)
    if not device.trust(args.address):
        raise LocalProtocolError(f"you have not exchanged messages with {args.address} yet")
    print(f"trusting the current identity key of {args.address}")


def cmd_trust_node(args: argparse.Namespace) -> None:
    device = _device(args)
    node = validate_node_name(args.node, remote=True)
    if not device.state.forget_node_key(node):
        raise LocalProtocolError(f"this device has not pinned a key for {node}")
    print(f"forgot the pinned key of {node}: the next one your home node vouches for is pinned")


def cmd_lookup(args: argparse.Namespace) -> None:
    device = _device(args)
    found = trio.run(device.lookup, args.address)
    if args.json:
        print(json.dumps(_lookup_json(found)))
        return
    view, proven = found.view, found.checked.proven
    head, previous = proven.head, found.checked.previous
    count = len(view.device_list.devices)
    print(f"{view.address}: identity {view.identity.fingerprint}, {count} device{'s' if count != 1 else ''} (device list version {view.device_list.version})")
    print(f"leaf {proven.index} of {head.node}'s key directory; tree size {head.size}, root {head.root.hex()}, signed {_iso(head.at)}")
    print(f"witnesses: {', '.join(found.checked.witnesses) or 'none'}")
    if previous is not None:
        print(f"consistent with the head seen before (tree size {previous.size})")
    if found.identity_changed:
        print(f"warning: the identity key of {view.address} changed since you trusted it", file=sys.stderr)


def _lookup_json(found: Lookup) -> dict:
    checked, view = found.checked, found.view
    entry, head, previous = checked.proven.entry, checked.proven.head, checked.previous
    return {
        "address": view.address,
        "entry": {
            "account": entry.account,
            "identity": entry.identity.hex(),
            "identity_fingerprint": view.identity.fingerprint,
            "device_list": {"version": view.device_list.version, "devices": list(view.device_list.devices), "issued": view.device_list.issued},
            "prev": entry.prev,
            "at": entry.at,
        },
        "leaf": entry.raw.hex(),
        "leaf_index": checked.proven.index,
        "tree_size": head.size,
        "root_hash": head.root.hex(),
        "inclusion_proof": [h.hex() for h in checked.proof.path],
        "tree_head": {"node": head.node, "tree_size": head.size, "root_hash": head.root.hex(), "timestamp": head.at, "signed_head": head.raw.hex()},
        "cosignatures": [
            {"witness": c.witness, "timestamp": c.at, "cosignature": c.raw.hex(), "verified": c.verified} for c in checked.cosignatures
        ],
        "verified": True,
        "consistent_with": {"tree_size": previous.size, "root_hash": previous.root.hex()} if previous is not None else None,
        "identity_changed": found.identity_changed,
    }


def cmd_witness_quorum(args: argparse.Namespace) -> None:
    state = _device(args).state
    if args.quorum is not None:
        if args.quorum != "auto" and not (args.quorum.isdigit() and int(args.quorum) <= limits.MAX_COSIGNATURES):
            raise LocalProtocolError(f"the witness quorum is a number from 0 to {limits.MAX_COSIGNATURES}, or auto")
        state.set_witness_quorum(None if args.quorum == "auto" else int(args.quorum))
    quorum = state.witness_quorum()
    if quorum is None:
        print("auto (1 witness cosignature for other nodes' heads, and for the home node's once it has witnesses)")
    else:
        print(f"{quorum} witness cosignature{'s' if quorum != 1 else ''}")


def cmd_alerts(args: argparse.Namespace) -> None:
    device = _device(args)
    if device.state.registered():
        try:
            trio.run(device.check)
        except (ConnectError, NodeError, ProtocolError) as exc:
            print(f"sonet: warning: could not check your account's directory entries now: {exc}", file=sys.stderr)
    alerts = device.state.alerts()
    if args.json:
        print(json.dumps([{"id": a.id, "at": _iso(a.at), "kind": a.kind, "text": a.text} for a in alerts]))
    else:
        for a in alerts:
            print(f"[{_iso(a.at)}] {a.kind}: {a.text}")
        if not alerts:
            print("no alerts", file=sys.stderr)
    device.state.mark_alerts_shown([a.id for a in alerts])


def _print_alerts(args: argparse.Namespace, *, succeeded: bool) -> None:
    """Alerts and notices found during the command, once each, after its output; and why the
    account's own entries could not be checked, when the command itself went through (after a
    failed command, its one error line says enough)."""
    device: Device | None = getattr(args, "device", None)
    if device is None:
        return
    if device.monitor_error is not None and succeeded:
        print(f"sonet: warning: could not check your account's key-directory entries now: {device.monitor_error}", file=sys.stderr)
    for line in device.notices:  # texts that waited on this device and were sent or given up
        print(f"sonet: notice: {line}", file=sys.stderr)
    alerts: list[Alert] = device.state.alerts(unshown=True)
    for a in alerts:
        print(f"sonet: {'ALERT' if a.kind == ALERT else 'notice'}: {a.text}", file=sys.stderr)
    device.state.mark_alerts_shown([a.id for a in alerts])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sonet", description="Sonet device: end-to-end encrypted messaging.")
    parser.add_argument("--home", metavar="DIR", help="device state directory (default: $SONET_HOME or the user data dir)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("register", help="create an account on a node", description="Create an account with this device.")
    p.add_argument("address", metavar="ADDRESS", help="the new account, user@node")
    p.add_argument("--node", required=True, metavar="URL", help="the home node, ws://HOST:PORT")
    p.add_argument("--invite", required=True, metavar="TOKEN", help="token from `sonet-node invite`")
    p.add_argument("--crypto-mode", choices=[m.value for m in CryptoMode], default="hybrid", help="key types (default: hybrid)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_register)

    p = sub.add_parser("send", help="send a text message", description="Send a text; returns once the home node stored it durably.")
    p.add_argument("address", metavar="ADDRESS", help="recipient, user@node")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_send)

    p = sub.add_parser(
        "sent",
        help="show what became of sent messages",
        description="List recent sent messages, newest first, with their state: pending (kept on this device: the "
        "recipient's keys could not be fetched; sent by itself the next time the device connects), sent (the home node holds it), "
        "queued (waiting for the recipient's node, with why when known), accepted (the recipient's node holds it), "
        "delivered, read, or failed (with why). Messages still on their way are refreshed from the home node.",
    )
    p.add_argument("--limit", type=int, default=20, metavar="N", help="how many messages (default 20)")
    p.add_argument("--json", action="store_true", help="one JSON object per line: id, to, sent_at, state, code, message, delivered_at, read_at")
    p.set_defaults(fn=cmd_sent)

    p = sub.add_parser("recv", help="receive messages", description="Print new messages, receipts and typing notices, oldest first.")
    p.add_argument("--wait", type=float, metavar="SECONDS", help="if nothing is queued, wait up to SECONDS for a message")
    p.add_argument("--read", action="store_true", help="also send read receipts for the messages shown")
    p.add_argument("--json", action="store_true", help="one JSON object per line: id, from, sent_at, received_at, type, text")
    p.set_defaults(fn=cmd_recv)

    p = sub.add_parser("typing", help="tell someone you are typing", description="Send an ephemeral typing indicator (never stored).")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--stop", action="store_true", help="say you stopped typing")
    p.set_defaults(fn=cmd_typing)

    p = sub.add_parser("link", help="add this device to an existing account", description="Link a new device to an account.")
    link = p.add_subparsers(dest="link_command", required=True, metavar="STEP")
    q = link.add_parser("begin", help="on the NEW device: print a code and wait", description="Print a link code on the first line, then wait for approval.")
    q.add_argument("--node", required=True, metavar="URL", help="the account's node, ws://HOST:PORT")
    q.add_argument("--crypto-mode", choices=[m.value for m in CryptoMode], default="hybrid", help="key types (default: hybrid)")
    q.set_defaults(fn=cmd_link_begin)
    q = link.add_parser("approve", help="on an EXISTING device: approve a code", description="Approve the new device that shows CODE.")
    q.add_argument("code", metavar="CODE")
    q.set_defaults(fn=cmd_link_approve)

    p = sub.add_parser("devices", help="list or remove this account's devices", description="List the account's devices, or remove one.")
    p.add_argument("action", nargs="?", choices=("list", "remove"), default="list")
    p.add_argument("id", nargs="?", type=int, metavar="ID", help="device id to remove")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(fn=cmd_devices)

    p = sub.add_parser("safety-number", help="show the safety number with a contact", description="Compare this number with your contact in person or on a call.")
    p.add_argument("address", metavar="ADDRESS")
    p.add_argument("--json", action="store_true", help="machine-readable output")
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
    p.add_argument("--json", action="store_true", help="one JSON list of {id, at, kind, text}")
    p.set_defaults(fn=cmd_alerts)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc = 1
    try:
        rc = _run(args)
        return rc
    finally:
        _print_alerts(args, succeeded=rc == 0)


def _run(args: argparse.Namespace) -> int:
    try:
        args.fn(args)
    except NodeError as exc:
        print(f"sonet: error: {exc} ({exc.code})", file=sys.stderr)
        return 1
    except (ConnectError, StateError, VaultError, LocalProtocolError) as exc:
        print(f"sonet: error: {exc}", file=sys.stderr)
        return 1
    except ProtocolError as exc:  # what a node or contact sent did not verify
        print(f"sonet: error: {exc} ({exc.code})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`| head`): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
