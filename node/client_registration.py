"""Requests that change which devices an account has: register, link, remove.

``Register`` creates an account with this device as its first; a new device joins an existing
account through a link slot (``LinkBegin`` / ``LinkFetch`` / ``LinkApprove`` / ``LinkComplete``,
see node/linking.py); ``RemoveDevice`` takes one out and closes its connections. Device lists
and records are checked by node/client_checks.py before anything is written. Each change
appends the account's key-directory leaf in its own transaction; the handler then has the
directory sign a head covering it before answering.

``Register`` and ``LinkComplete`` carry the new device's first prekeys, stored in the
transaction that creates the device: no crash leaves a device nobody can start a session with.
Anyone may send them before having an account (on an open node), and checking the prekeys'
signatures is the costly part, so it comes last: the prekey counts (at most
``limits.MAX_FIRST_ONE_TIME_PREKEYS`` of each kind), the records, the invite and the name are
checked first, then the attempt is charged to the connection and its source address
(node/client_limits.py ``admit_registration``: ``rate_limited`` past them, nothing checked).
Both are idempotent for the device: after a lost answer it connects again with the same key and
sends the same request, and once the first one committed it is answered with the same
``Registered`` (the invite is not spent twice, the name not "taken" by itself).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from sonet.core import limits
from sonet.core.address import parse_address
from sonet.core.client_api import (
    DeviceKeys,
    DeviceRemoved,
    LinkApprove,
    LinkApproved,
    LinkBegin,
    LinkComplete,
    LinkFetch,
    LinkOffer,
    LinkPending,
    LinkSlot,
    Register,
    Registered,
    RemoveDevice,
)
from sonet.core.errors import RemoteProtocolError
from sonet.core.invite import hash_invite_secret

from .client_checks import (
    RequestError,
    check_device_keys,
    check_first_prekey_counts,
    check_linked_record,
    check_new_account,
    check_next_list,
    refused,
)
from .client_context import ClientContext, Session, account_row, require_registered, require_unregistered
from .linking import LinkError
from .store import AccountExists, InviteInvalid, StaleDeviceList, StoreError

__all__ = ["register", "link_begin", "link_fetch", "link_approve", "link_complete", "remove_device"]

log = logging.getLogger("sonet.node.client")

_REGISTER_ERRORS = {
    AccountExists: "{account} is already taken (or this device key is registered already)",
    InviteInvalid: "the invite token is unknown, already used or expired; ask the operator for a new one",
}


async def register(session: Session, req: Register) -> None:
    ctx = session.ctx
    with refused():
        account = str(parse_address(f"{req.user}@{ctx.name}", remote=True))
    if session.mailbox is not None:
        # This device is registered already: the same Register again is a retry after a lost
        # answer (the first one committed); another is refused.
        if session.mailbox[0] != account:
            require_unregistered(session)
        _admit(session, None)
        await _answer_again(session, req.request, session.mailbox)
        return
    check_first_prekey_counts(req.keys)
    record, account_key = check_new_account(
        account=account,
        record=req.record,
        account_identity=req.account_identity,
        device_list=req.device_list,
        peer=session.peer,
        policy=ctx.policy,
    )
    invite_hash = None
    # An address the operator removed is given out again only with an invite, even on an open
    # node (node/admin.py); the transaction checks again.
    if ctx.registration == "invite" or await ctx.store.account_removed(account) is not None:
        if not req.invite:
            raise RequestError("invite_required", "this node requires an invite token")
        invite_hash = hash_invite_secret(req.invite)
        # Cheap checks before the costly one (hundreds of prekey signatures): without a usable
        # invite a request costs the node one read. The transaction checks again.
        if not await ctx.store.invite_usable(invite_hash, account=account, now=ctx.clock_ms()):
            raise RequestError("invite_invalid", _REGISTER_ERRORS[InviteInvalid].format(account=account))
    elif await ctx.store.account(account) is not None and await ctx.store.device_by_fingerprint(session.peer.fingerprint) is None:
        # An open node: a name that is taken is refused before the costly part too, unless by
        # this very device (a retry whose first try committed after this connection's Welcome:
        # the transaction answers it as the first). The transaction checks again.
        raise RequestError("account_exists", _REGISTER_ERRORS[AccountExists].format(account=account))
    _admit(session, req.keys)
    keys = await trio.to_thread.run_sync(check_device_keys, req.keys, record.identity)
    try:
        row = await ctx.store.register_account(
            account=account,
            fingerprint=record.fingerprint,
            record=req.record,
            account_identity=account_key.to_bytes(),
            device_list=req.device_list,
            invite_hash=invite_hash,
            now=ctx.clock_ms(),
            keys=keys,
        )
    except (AccountExists, InviteInvalid) as exc:
        raise RequestError(exc.code, _REGISTER_ERRORS[type(exc)].format(account=account)) from None
    except StoreError as exc:
        raise RequestError(exc.code, str(exc)) from None
    log.info("registered an account (device %d)", row.device_id)  # no address in logs: the audit log names it
    session.become(row)
    await _publish(ctx)
    await session.send(Registered(request=req.request, account=row.account, device=row.device_id))


def _admit(session: Session, keys: DeviceKeys | None) -> None:
    """Charge a registration to its connection and address: the signature checks of the new
    device's prekeys, or (``keys`` None) one asked again by a registered device, answered
    again: a retry after a lost answer comes once, and unbounded they cost a log line and a
    directory read each (~700 a second on one connection)."""
    if session.ctx.limits is not None:
        checks = 0 if keys is None else len(keys.one_time) + len(keys.pq_one_time) + 2  # and the signed / last-resort ones
        session.ctx.limits.admit_registration(session, checks)


async def _answer_again(session: Session, request: int, device: tuple[str, int]) -> None:
    """Answer a Register / LinkComplete whose device is registered already (the same request
    after a lost answer) with the same Registered. Its head may not be signed yet if the node
    stopped right after the commit: publish it now."""
    account, device_id = device
    log.info("device %d of an account asked again to be registered: answered again", device_id)
    await _publish(session.ctx)
    await session.send(Registered(request=request, account=account, device=device_id))


async def _publish(ctx: ClientContext) -> None:
    """Sign a head covering the change just committed. The change stands if this fails: the
    next lookup of the account publishes it."""
    try:
        await ctx.directory.publish()
    except StoreError as exc:
        log.warning("key directory: could not sign a new head (the next lookup retries): %s", exc)


# Linking a new device -------------------------------------------------------------------


@contextmanager
def _link_refused() -> Iterator[None]:
    try:
        yield
    except LinkError as exc:
        raise RequestError(exc.code, str(exc)) from None
    except StoreError as exc:  # the slots are in the store (node/linking.py)
        log.warning("link slots: %s", exc)
        raise RequestError("unavailable", "the node cannot serve device linking right now; try again later") from None


async def link_begin(session: Session, req: LinkBegin) -> None:
    ctx = session.ctx
    require_unregistered(session)
    if not 0 < len(req.ephemeral) <= limits.MAX_LINK_EPHEMERAL_BYTES:
        raise RequestError("bad_input", f"the ephemeral key must be 1..{limits.MAX_LINK_EPHEMERAL_BYTES} bytes")
    with _link_refused():
        slot = await ctx.links.open(
            ephemeral=req.ephemeral,
            owner=session,
            push=session.push_offer,
            now=ctx.clock_ms(),
            source=session.source,
            device=session.peer.fingerprint,
        )
    await session.send(LinkSlot(request=req.request, slot=slot.slot, expires=slot.expires))


async def link_fetch(session: Session, req: LinkFetch) -> None:
    ctx = session.ctx
    require_registered(session)
    with _link_refused():
        slot = await ctx.links.get(req.slot, now=ctx.clock_ms())
    await session.send(LinkPending(request=req.request, ephemeral=slot.ephemeral))


async def link_approve(session: Session, req: LinkApprove) -> None:
    ctx = session.ctx
    account, _ = require_registered(session)
    if len(req.provisioning) > limits.MAX_PROVISIONING_BYTES:
        raise RequestError("bad_input", f"the provisioning payload is larger than {limits.MAX_PROVISIONING_BYTES} bytes")
    row = await account_row(ctx, account)
    if len(await ctx.store.devices(account)) >= limits.MAX_DEVICES_PER_ACCOUNT:
        raise RequestError("too_many_devices", f"an account has at most {limits.MAX_DEVICES_PER_ACCOUNT} devices")
    offer = LinkOffer(slot=req.slot, account=account, provisioning=req.provisioning, device_list=row.device_list)
    with _link_refused():
        await ctx.links.approve(req.slot, account=account, offer=offer, now=ctx.clock_ms())
    log.info("link slot approved")
    await session.send(LinkApproved(request=req.request))


async def link_complete(session: Session, req: LinkComplete) -> None:
    ctx = session.ctx
    if session.mailbox is not None:
        await _link_again(session, req, session.mailbox)
        return
    # A retry may also arrive before the node noticed the first connection ended, with its
    # LinkComplete committed after this connection's Welcome (the slot was that connection's).
    committed = await ctx.store.device_by_fingerprint(session.peer.fingerprint)
    if committed is not None:
        session.become(committed)
        await _link_again(session, req, (committed.account, committed.device_id))
        return
    with _link_refused():
        slot = await ctx.links.owned_by(req.slot, session, now=ctx.clock_ms(), device=session.peer.fingerprint)
    if slot.approved_for is None:
        raise RequestError("link_not_approved", "no device of the account has approved this link yet")
    account = slot.approved_for
    if await ctx.store.account_disabled(account):  # disabled since the approval (node/admin.py)
        raise RequestError("account_disabled", _disabled(account))
    record = check_linked_record(req.record, account=account, peer=session.peer, policy=ctx.policy)
    row = await account_row(ctx, account)
    current = {r.fingerprint for r in await ctx.store.devices(account)}
    check_next_list(row, req.device_list, current | {record.fingerprint})
    check_first_prekey_counts(req.keys)
    _admit(session, req.keys)
    keys = await trio.to_thread.run_sync(check_device_keys, req.keys, record.identity)
    try:
        device = await ctx.store.add_device(
            account=account,
            fingerprint=record.fingerprint,
            record=req.record,
            device_list=req.device_list,
            expected_version=row.device_list_version,
            now=ctx.clock_ms(),
            keys=keys,
        )
    except StoreError as exc:
        raise RequestError(exc.code, str(exc)) from None
    log.info("linked device %d to an account", device.device_id)
    session.become(device)
    with _link_refused():  # one-shot: the slot is used (the device is in the store already)
        await ctx.links.used(slot.slot)
    await _publish(ctx)
    if await ctx.store.account_disabled(account):
        # disabled between the check above and the commit: the admin watcher may have looked
        # at this connection before the device existed, so it is closed here (read after the
        # commit: a disable after this read finds the device and closes it)
        raise RemoteProtocolError(_disabled(account), code="account_disabled")
    await session.send(Registered(request=req.request, account=account, device=device.device_id))


def _disabled(account: str) -> str:
    return f"the account {account} is disabled on this node; ask its operator"


async def _link_again(session: Session, req: LinkComplete, device: tuple[str, int]) -> None:
    """A LinkComplete from a device that is registered: the same one again (its record names
    the account it is in) is answered as the first was; another is refused."""
    ctx = session.ctx
    _admit(session, None)  # before the record's signature check
    try:
        check_linked_record(req.record, account=device[0], peer=session.peer, policy=ctx.policy)
    except RequestError:
        require_unregistered(session)  # raises already_registered
        raise
    await _answer_again(session, req.request, device)


# Removing a device ----------------------------------------------------------------------


async def remove_device(session: Session, req: RemoveDevice) -> None:
    ctx = session.ctx
    account, _ = require_registered(session)
    row = await account_row(ctx, account)
    devices = {r.device_id: r for r in await ctx.store.devices(account)}
    target = devices.get(req.device)
    if target is None:
        raise RequestError("unknown_device", f"{account} has no device {req.device}")
    if len(devices) == 1:
        raise RequestError("last_device", "the last device of an account cannot be removed")
    check_next_list(row, req.device_list, {r.fingerprint for r in devices.values()} - {target.fingerprint})
    try:
        removed = await ctx.store.remove_device(
            account=account,
            device_id=req.device,
            device_list=req.device_list,
            expected_version=row.device_list_version,
            now=ctx.clock_ms(),
        )
    except StaleDeviceList as exc:
        raise RequestError(exc.code, str(exc)) from None
    if not removed:
        raise RequestError("unknown_device", f"{account} has no device {req.device}")
    log.info("removed device %d of an account", req.device)
    await _publish(ctx)
    await session.send(DeviceRemoved(request=req.request, device=req.device))
    ctx.connections.removed(target.fingerprint)
