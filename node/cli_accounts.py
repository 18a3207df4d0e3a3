"""``sonet-node accounts list|show|disable|enable|remove``: the operator's view of accounts.

The work is node/admin.py's; this module parses, asks before a removal, records each change in
the audit log (node/audit.py: account_disabled, account_enabled, account_removed, after the
change committed) and prints (one JSON object per account or per result with ``--json``).
Works with the node stopped or running.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sonet.cli_output import emit, iso_ms

from . import admin
from .audit import record
from .cli import UserError, _data_dir, _existing_node, _json_times, _with_store
from .clock import now_ms

if TYPE_CHECKING:
    from .store import SqliteStore

__all__ = ["add_accounts_commands"]


def _address(args: argparse.Namespace, node: str) -> str:
    try:
        return admin.account_address(args.address, node)
    except admin.AdminError as exc:
        raise UserError(str(exc), code=exc.code) from None


def _run(args: argparse.Namespace, op: Callable[[SqliteStore, str], Awaitable[Any]], *, address: bool = True) -> Any:
    """``op(store, address)`` on the node's store; an AdminError as one line."""
    data, config, _key = _existing_node(args)
    target = _address(args, config.name) if address else ""

    async def go(store: SqliteStore) -> Any:
        return await op(store, target)

    try:
        return _with_store(data, go)
    except admin.AdminError as exc:
        raise UserError(str(exc), code=exc.code) from None


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def cmd_list(args: argparse.Namespace) -> None:
    accounts = _run(args, lambda store, _: admin.list_accounts(store), address=False)
    if args.json:
        for account in accounts:
            emit(_json_times(account))
        return
    if not accounts:
        print("no accounts")
    for a in accounts:
        n = a["devices"]
        print(
            f"{a['address']}  {a['state']}  {n} device{'' if n == 1 else 's'}  created {iso_ms(a['created_at'])}"
            f"  mailbox {a['envelopes']} ({_size(a['envelope_bytes'])})"
        )


def cmd_show(args: argparse.Namespace) -> None:
    _data, config, _key = _existing_node(args)
    shown = _run(
        args,
        lambda store, address: admin.show_account(
            store, address, max_envelopes=config.mailbox_max_envelopes, max_bytes=config.mailbox_max_bytes
        ),
    )
    if args.json:
        emit(_json_times(shown))
        return
    print(f"{shown['address']}: {shown['state']}" + (f" since {iso_ms(shown['disabled_at'])}" if shown["disabled_at"] else ""))
    print(f"  created {iso_ms(shown['created_at'])}, identity {shown['identity']}, device list version {shown['device_list_version']}")
    quota = shown["quota"]
    print(f"  mailbox {shown['envelopes']} envelopes ({_size(shown['envelope_bytes'])}); per device at most {quota['envelopes_per_device']} ({_size(quota['bytes_per_device'])})")
    for d in shown["device_list"]:
        print(
            f"  device {d['device']}: {d['fingerprint']}  {d['state']}  created {iso_ms(d['created_at'])}"
            f"  mailbox {d['envelopes']} ({_size(d['envelope_bytes'])})"
            f"  prekeys {d['one_time_prekeys']}+{d['pq_one_time_prekeys']} pq  key packages {d['key_packages']}"
        )


def cmd_disable(args: argparse.Namespace) -> None:
    result = _run(args, lambda store, address: admin.disable_account(store, address, now=now_ms()))
    record(_data_dir(args), "account_disabled", account=result["address"])
    if args.json:
        emit(_json_times(result))
    else:
        print(f"disabled {result['address']}: its devices are refused (open connections close within a second); mail for it is still accepted")


def cmd_enable(args: argparse.Namespace) -> None:
    result = _run(args, lambda store, address: admin.enable_account(store, address, now=now_ms()))
    record(_data_dir(args), "account_enabled", account=result["address"])
    if args.json:
        emit(_json_times(result))
    else:
        print(f"enabled {result['address']}: its devices may connect again")


def cmd_remove(args: argparse.Namespace) -> None:
    _data, config, _key = _existing_node(args)
    address = _address(args, config.name)
    if not args.yes:
        _confirm(address, as_json=args.json)
    result = _run(args, lambda store, target: admin.remove_account(store, target, now=now_ms()))
    record(
        _data_dir(args), "account_removed", account=address,
        devices=len(result["devices_removed"]), envelopes_purged=result["envelopes_purged"],
    )
    if args.json:
        emit(_json_times(result))
    else:
        n = len(result["devices_removed"])
        print(
            f"removed {result['address']}: {n} device{'' if n == 1 else 's'} revoked, {result['envelopes_purged']} envelopes purged,"
            " the removal recorded in the key directory; only a new invite registers the address again"
        )


def _confirm(address: str, *, as_json: bool) -> None:
    """Removal cannot be undone: on a terminal the operator types the address; elsewhere --yes."""
    if as_json or not sys.stdin.isatty():
        raise UserError(f"removing {address} cannot be undone: add --yes to confirm", code="not_confirmed")
    print(f"This removes {address} for good: its devices are revoked and its mailbox is deleted.", file=sys.stderr)
    try:
        typed = input(f"Type {address} to confirm: ")
    except EOFError:
        typed = ""
    if typed.strip().lower() != address:
        raise UserError(f"not confirmed: {address} was not removed", code="not_confirmed")


def add_accounts_commands(sub: Any, with_json: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """``accounts`` and its actions on the top-level subparsers ``sub``."""
    accounts = sub.add_parser(
        "accounts",
        help="list, inspect, disable, enable and remove accounts (works while the node runs)",
        description="List, inspect, disable, enable and remove accounts. Works with the node stopped or running.",
    )
    actions = accounts.add_subparsers(dest="accounts_command", required=True, metavar="ACTION")

    def action(name: str, fn: Callable[[argparse.Namespace], None], help_text: str, *, address: bool = True) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
        if address:
            p.add_argument("address", metavar="ADDRESS", help="the account, user@node or just user")
        p.set_defaults(fn=fn)
        return with_json(p)

    action("list", cmd_list, "every account: state, devices, created, mailbox size", address=False)
    action("show", cmd_show, "one account: its devices with fingerprints and states, prekeys, mailbox against its quota")
    action("disable", cmd_disable, "refuse the account's devices (open connections close); mail is still accepted")
    action("enable", cmd_enable, "let a disabled account's devices connect again")
    p = action(
        "remove",
        cmd_remove,
        "offboard an account: devices revoked, mailbox purged, the removal recorded in the key directory",
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
