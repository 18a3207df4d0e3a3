"""``sonet``: the device command line (ARCHITECTURE §9)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import trio

from core.crypto import CryptoMode
from core.errors import LocalProtocolError

from .connection import ConnectError, NodeError
from .sdk import Device
from .state import DeviceState, InboxMessage, StateError, default_home

__all__ = ["main"]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _device(args: argparse.Namespace) -> Device:
    home = Path(args.home).expanduser() if args.home else default_home()
    return Device(DeviceState(home))


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
    for fp in result.new_devices:
        print(f"note: {result.recipient} has a device not seen before ({fp})", file=sys.stderr)
    if args.json:
        print(json.dumps({"id": result.id.hex(), "to": result.recipient, "devices": result.devices, "status": "accepted"}))
    else:
        print(f"sent to {result.recipient} ({result.devices} device{'s' if result.devices != 1 else ''}); id {result.id.hex()}")


def _message_json(m: InboxMessage) -> str:
    return json.dumps(
        {"id": m.id.hex(), "from": m.sender, "sent_at": _iso(m.sent_at), "received_at": _iso(m.received_at), "type": m.type, "text": m.text},
        ensure_ascii=False,
    )


def cmd_recv(args: argparse.Namespace) -> None:
    device = _device(args)
    result = trio.run(lambda: device.receive(wait=args.wait))
    for line in result.rejected:
        print(f"warning: {line}", file=sys.stderr)
    for m in result.messages:
        if args.json:
            print(_message_json(m), flush=True)
        else:
            print(f"[{_iso(m.sent_at)}] {m.sender}: {m.text}", flush=True)
    device.state.mark_shown([m.id for m in result.messages])
    if not result.messages and not args.json:
        print("no new messages", file=sys.stderr)


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

    p = sub.add_parser("recv", help="receive messages", description="Print new messages, oldest first.")
    p.add_argument("--wait", type=float, metavar="SECONDS", help="if nothing is queued, wait up to SECONDS for a message")
    p.add_argument("--json", action="store_true", help="one JSON object per line: id, from, sent_at, received_at, type, text")
    p.set_defaults(fn=cmd_recv)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except NodeError as exc:
        print(f"sonet: error: {exc} ({exc.code})", file=sys.stderr)
        return 1
    except (ConnectError, StateError, LocalProtocolError) as exc:
        print(f"sonet: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
