"""Who an account's devices are, verified: the account identity key (pinned per contact), its
signed device list, and each device's self-signed record, all from the home node.

A node can serve anything; what makes a device trustworthy is that the account identity key
the user pinned (and can compare as a safety number) signed a device list naming it, and that
the key and list are the account's entry in its node's transparency log, proven included in a
head consistent with what this device saw before (client/transparency.py). A changed account
identity key blocks sending until the user accepts it (`sonet trust`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sonet.core.address import Address
from sonet.core.crypto import CryptoPolicy, VerifyKey
from sonet.core.device import DeviceRecord, verify_device_record
from sonet.core.device_list import DeviceList, check_successor, verify_device_list
from sonet.core.errors import LocalProtocolError, VerifyError

from .connection import Connection, NodeError
from .state import DeviceState
from .transparency import Checked, fetch_devices

__all__ = ["AccountView", "Lookup", "IdentityChanged", "verify_account", "fetch_account", "lookup_account"]


class IdentityChanged(LocalProtocolError):
    """The contact's account identity key is not the one we trusted."""

    code = "identity_changed"

    def __init__(self, address: str) -> None:
        super().__init__(
            f"the identity key of {address} changed: compare safety numbers "
            f"(`sonet safety-number {address}`), then accept it with `sonet trust {address}`"
        )


@dataclass(frozen=True, kw_only=True)
class AccountView:
    address: str
    identity: VerifyKey
    device_list: DeviceList
    devices: dict[int, DeviceRecord]  # device id -> verified record, every one in the signed list


@dataclass(frozen=True, kw_only=True)
class Lookup:
    """An account's verified devices and how its directory proof checked out (`sonet lookup`)."""

    view: AccountView
    checked: Checked
    #: the directory shows another account identity key than the one trusted
    identity_changed: bool


def verify_account(
    address: str, account_identity: bytes, device_list: bytes, entries: list[tuple[int, bytes]], policy: CryptoPolicy
) -> AccountView:
    """Check the list signature and that each record is listed; drop nothing silently."""
    if not account_identity:  # a node that hands out an account's tombstone (its last leaf)
        raise NodeError("unknown_account", f"{address} was removed from its node")
    identity = VerifyKey.from_bytes(account_identity)
    policy.require(identity.mode, f"the account identity key of {address}")
    listed = verify_device_list(device_list, account_key=identity, account=address)
    devices: dict[int, DeviceRecord] = {}
    for device_id, raw in entries:
        record = verify_device_record(raw, policy=policy, account=address)
        if record.fingerprint not in listed.devices:
            raise VerifyError(f"device {device_id} of {address} is not in its signed device list", code="unlisted_device")
        devices[device_id] = record
    return AccountView(address=address, identity=identity, device_list=listed, devices=devices)


async def fetch_account(
    conn: Connection, state: DeviceState, address: Address, *, policy: CryptoPolicy, now: int, require_trusted: bool = True
) -> AccountView:
    return (await lookup_account(conn, state, address, policy=policy, now=now, require_trusted=require_trusted)).view


async def lookup_account(
    conn: Connection, state: DeviceState, address: Address, *, policy: CryptoPolicy, now: int, require_trusted: bool = True
) -> Lookup:
    reply, checked = await fetch_devices(conn, state, str(address), now=now)
    view = verify_account(
        str(address), reply.account_identity, reply.device_list, [(d.device, d.record) for d in reply.devices], policy
    )
    contact = state.see_identity(str(address), view.identity.to_bytes(), now)
    if require_trusted and contact.changed:
        raise IdentityChanged(str(address))
    if not contact.changed:  # only lists signed by the key the user trusts are pinned
        _refuse_rollback(state, view)
    return Lookup(view=view, checked=checked, identity_changed=contact.changed)


def _refuse_rollback(state: DeviceState, view: AccountView) -> None:
    """A node must not serve an older signed list (one that still names a removed device)."""
    key = f"device_list/{view.address}"
    previous = state.get(key)
    if previous is not None:
        try:
            old = verify_device_list(previous, account_key=view.identity, account=view.address)
        except VerifyError:
            old = None  # signed by an earlier account key: the identity change was handled above
        if old is not None:
            check_successor(old, view.device_list)
            if old.version == view.device_list.version:
                return
    state.put(key, view.device_list.raw)
