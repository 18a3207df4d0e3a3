"""``sonet-node invites list|revoke``: the invites this node issued.

Only the hash of a token is stored, so an invite is named by a prefix of that hash, never by its
token. The work is node/admin.py's. Works with the node stopped or running (a revoked invite is
refused at the next registration that presents it). A revocation is recorded in the audit log
(node/audit.py, ``invite_revoked`` with the hash prefix, never the token).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from sonet.cli_output import emit, iso_ms

from . import admin
from .audit import record
from .cli import UserError, _existing_node, _json_times, _with_store
from .clock import now_ms

__all__ = ["add_invites_commands"]


def cmd_list(args: argparse.Namespace) -> None:
    data, _config, _key = _existing_node(args)
    invites = _with_store(data, lambda store: admin.list_invites(store, now=now_ms()))
    if args.json:
        for invite in invites:
            emit(_json_times(invite))
        return
    if not invites:
        print("no invites")
    for i in invites:
        used = f" by {i['used_by']} at {iso_ms(i['used_at'])}" if i["used_at"] is not None else ""
        print(f"{i['hash_prefix']}  {i['state']}{used}  created {iso_ms(i['created_at'])}  expires {iso_ms(i['expires_at'])}")


def cmd_revoke(args: argparse.Namespace) -> None:
    data, _config, _key = _existing_node(args)
    try:
        revoked = _with_store(data, lambda store: admin.revoke_invite(store, args.prefix, now=now_ms()))
    except admin.AdminError as exc:
        raise UserError(str(exc), code=exc.code) from None
    record(data, "invite_revoked", hash_prefix=revoked["hash_prefix"])
    if args.json:
        emit(_json_times(revoked))
    else:
        print(f"revoked invite {revoked['hash_prefix']}: it can no longer register anyone")


def add_invites_commands(sub: Any, with_json: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """``invites`` and its actions on the top-level subparsers ``sub``."""
    invites = sub.add_parser(
        "invites",
        help="list and revoke invites (works while the node runs)",
        description="List and revoke the invites `sonet-node invite` issued. Works with the node stopped or running.",
    )
    actions = invites.add_subparsers(dest="invites_command", required=True, metavar="ACTION")
    p = actions.add_parser("list", help="every stored invite by hash prefix: state, created, expires (never the token)",
                           description="Every stored invite by a prefix of its token's hash: state, created, expires. The token is not stored and never shown.")
    p.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
    p.set_defaults(fn=cmd_list)
    with_json(p)
    p = actions.add_parser("revoke", help="make an unused invite unusable", description="Make an unused invite unusable.")
    p.add_argument("--data", required=True, metavar="DIR", help="the node's data directory")
    p.add_argument("prefix", metavar="PREFIX", help=f"the start of its hash, at least {admin.MIN_PREFIX_HEX} hex digits (see `invites list`)")
    p.set_defaults(fn=cmd_revoke)
    with_json(p)
