"""Operator administration of accounts and invites (``sonet-node accounts``, ``invites``).

Everything here reads and writes the store only, so it works the same with the node stopped or
running: a running node notices disables and removals within a fraction of a second
(node/admin_watch.py) and reads the rest (invites, enabled accounts) at each registration or
connection. The results are plain dicts with epoch-ms times under ``*_at`` keys, ready for the
command line's JSON or text. Every refusal is an ``AdminError`` with a code and one line.

What the operations mean:
- disable: the account's devices are refused at connect and their open connections are closed
  (``account_disabled``); its mailbox keeps taking mail, lookups by peers and contacts are
  answered as before (peers see nothing special). enable undoes it.
- remove (offboarding): devices closed and revoked (a later connection hears
  ``device_removed``), mailboxes, prekeys and KeyPackages deleted, and a tombstone leaf (no
  identity, no device list) appended to the key directory, so monitors see the account end.
  Mail to the address is then refused as for an unknown account. The address can be
  registered again only with a new invite, even on an open node; the new account's first leaf
  chains to the tombstone, and contacts see a new identity key (a safety-number change).
- invites are listed and revoked by a prefix of their token's hash: the token itself is never
  stored, so it cannot be shown.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sonet.core.address import parse_address
from sonet.core.device_list import decode_account_identity
from sonet.core.errors import ProtocolError

if TYPE_CHECKING:  # annotations only: `sonet-node --help` shows MIN_PREFIX_HEX without loading the store
    from .store import AccountSummary, InviteRow, Store

__all__ = [
    "AdminError",
    "MIN_PREFIX_HEX",
    "account_address",
    "list_accounts",
    "show_account",
    "disable_account",
    "enable_account",
    "remove_account",
    "list_invites",
    "revoke_invite",
]

#: an invite prefix is at least this many hex digits (fewer would match most of a busy node's)
MIN_PREFIX_HEX = 4
#: hex digits of the hash shown per invite: enough to tell thousands apart
SHOWN_PREFIX_HEX = 12
_HEX = re.compile("[0-9a-f]+")


class AdminError(Exception):
    """A refusal the operator can fix; ``code`` for ``--json``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def account_address(text: str, node: str) -> str:
    """The normalised address of an account of ``node``: ``alice`` or ``alice@node``."""
    candidate = text if "@" in text else f"{text}@{node}"
    try:
        address = parse_address(candidate)
    except ProtocolError as exc:
        raise AdminError("bad_address", str(exc)) from None
    if address.node != node:
        raise AdminError("unknown_account", f"{address} is not an account of this node ({node})")
    return str(address)


async def _unknown(store: Store, address: str) -> AdminError:
    removed_at = await store.account_removed(address)
    if removed_at is not None:
        return AdminError("unknown_account", f"{address} was removed from this node; only a new invite registers it again")
    return AdminError("unknown_account", f"no account {address} on this node (see `sonet-node accounts list`)")


def _state(summary: AccountSummary) -> str:
    return "active" if summary.disabled_at is None else "disabled"


def _summary_dict(summary: AccountSummary) -> dict:
    return {
        "address": summary.account,
        "state": _state(summary),
        "created_at": summary.created_at,
        "disabled_at": summary.disabled_at,
        "devices": summary.devices,
        "envelopes": summary.envelopes,
        "envelope_bytes": summary.envelope_bytes,
    }


async def list_accounts(store: Store) -> list[dict]:
    return [_summary_dict(s) for s in await store.account_summaries()]


async def show_account(store: Store, address: str, *, max_envelopes: int, max_bytes: int) -> dict:
    """The account with each device (fingerprint, state, prekeys and KeyPackages left, what
    its mailbox holds against the per-device quota ``max_envelopes``/``max_bytes``)."""
    summary = await store.account_summary(address)
    row = await store.account(address)
    if summary is None or row is None:
        raise await _unknown(store, address)
    usage = await store.mailbox_usage(address)
    devices = []
    for device in await store.devices(address):
        one_time, pq_one_time = await store.prekey_counts(address, device.device_id)
        envelopes, size = usage.get(device.device_id, (0, 0))
        devices.append({
            "device": device.device_id,
            "fingerprint": device.fingerprint,
            "state": _state(summary),
            "created_at": device.created_at,
            "one_time_prekeys": one_time,
            "pq_one_time_prekeys": pq_one_time,
            "key_packages": await store.key_package_count(address, device.device_id),
            "envelopes": envelopes,
            "envelope_bytes": size,
        })
    try:
        identity: str | None = decode_account_identity(row.account_identity).fingerprint
    except ProtocolError:
        identity = None  # checked when it was stored; shown as unknown rather than failing
    return {
        **_summary_dict(summary),
        "identity": identity,
        "device_list_version": row.device_list_version,
        "quota": {"envelopes_per_device": max_envelopes, "bytes_per_device": max_bytes},
        "device_list": devices,
    }


async def disable_account(store: Store, address: str, *, now: int) -> dict:
    if not await store.set_account_disabled(address, disabled=True, now=now):
        raise await _unknown(store, address)
    summary = await store.account_summary(address)
    assert summary is not None
    return _summary_dict(summary)


async def enable_account(store: Store, address: str, *, now: int) -> dict:
    if not await store.set_account_disabled(address, disabled=False, now=now):
        raise await _unknown(store, address)
    summary = await store.account_summary(address)
    assert summary is not None
    return _summary_dict(summary)


async def remove_account(store: Store, address: str, *, now: int) -> dict:
    summary = await store.account_summary(address)
    fingerprints = await store.remove_account(address, now=now)
    if fingerprints is None:
        raise await _unknown(store, address)
    return {
        "address": address,
        "removed_at": now,
        "devices_removed": fingerprints,
        "envelopes_purged": summary.envelopes if summary else 0,
    }


def _invite_state(row: InviteRow, now: int) -> str:
    if row.used_at is not None:
        return "used"
    return "expired" if row.expires_at <= now else "unused"


def _invite_dict(row: InviteRow, now: int) -> dict:
    return {
        "hash_prefix": row.token_hash.hex()[:SHOWN_PREFIX_HEX],
        "state": _invite_state(row, now),
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "used_at": row.used_at,
        "used_by": row.used_by,
    }


async def list_invites(store: Store, *, now: int) -> list[dict]:
    return [_invite_dict(row, now) for row in await store.invites()]


async def revoke_invite(store: Store, prefix: str, *, now: int) -> dict:
    """Revoke the one unused invite whose token hash starts with ``prefix`` (hex)."""
    wanted = prefix.strip().lower()
    if len(wanted) < MIN_PREFIX_HEX or not _HEX.fullmatch(wanted):
        raise AdminError(
            "invalid_prefix",
            f"{prefix!r} is not an invite prefix: give at least {MIN_PREFIX_HEX} hex digits from `sonet-node invites list`",
        )
    matches = [row for row in await store.invites() if row.token_hash.hex().startswith(wanted)]
    if not matches:
        raise AdminError("unknown_invite", f"no invite starts with {wanted} (see `sonet-node invites list`)")
    if len(matches) > 1:
        raise AdminError("ambiguous_prefix", f"{len(matches)} invites start with {wanted}: give more digits")
    [row] = matches
    if row.used_at is not None:
        raise AdminError("invite_used", f"the invite {wanted} was already used by {row.used_by}; remove the account instead")
    if not await store.revoke_invite(row.token_hash):
        raise AdminError("invite_used", f"the invite {wanted} was used meanwhile")
    return {**_invite_dict(row, now), "state": "revoked"}

