"""Requests about keys: the account's devices, prekeys, bundles and sender certificates.

A device publishes its prekeys (checked by node/client_checks.py off the event loop); another
device of any account fetches the device list (``FetchDevices``) or one bundle per device
(``FetchBundles``, handing out one-time keys); a registered device gets a sender certificate
signed by the node key.
"""

from __future__ import annotations

import trio

from core import limits
from core.certs import issue_certificate
from core.client_api import (
    Bundle,
    Bundles,
    DeviceEntry,
    Devices,
    FetchBundles,
    FetchDevices,
    GetSenderCertificate,
    PrekeysPublished,
    PublishPrekeys,
    SenderCertificate,
)
from core.crypto import VerifyKey
from core.device import verify_device_record

from .client_checks import RequestError, check_prekeys, refused
from .client_context import (
    ClientContext,
    Session,
    account_row,
    local_account,
    require_registered,
    store_message,
)
from .store import StoreError

__all__ = ["fetch_devices", "publish_prekeys", "fetch_bundles", "sender_certificate"]


async def fetch_devices(session: Session, req: FetchDevices) -> None:
    ctx = session.ctx
    require_registered(session)
    account = local_account(ctx, req.account)
    row = await account_row(ctx, account)
    rows = await ctx.store.devices(account)
    entries = tuple(DeviceEntry(device=r.device_id, record=r.record) for r in rows)
    await session.send(
        Devices(
            request=req.request,
            account=account,
            account_identity=row.account_identity,
            device_list=row.device_list,
            devices=entries,
        )
    )


async def publish_prekeys(session: Session, req: PublishPrekeys) -> None:
    ctx = session.ctx
    account, device = require_registered(session)
    cap = limits.MAX_ONE_TIME_PREKEYS
    if len(req.one_time) > cap or len(req.pq_one_time) > cap:
        raise RequestError("too_many_prekeys", f"at most {cap} one-time prekeys of each kind")
    identity = await _stored_identity(ctx, account, device)
    # Up to a few hundred hybrid signatures: verified off the event loop.
    one_time, pq_one_time = await trio.to_thread.run_sync(check_prekeys, req, identity)
    try:
        counts = await ctx.store.publish_prekeys(
            account,
            device,
            signed_prekey=req.signed_prekey,
            pq_last_resort=req.pq_last_resort,
            one_time=one_time,
            pq_one_time=pq_one_time,
            max_one_time=cap,
        )
    except StoreError as exc:
        raise RequestError(exc.code, str(exc) if exc.code == "too_many_prekeys" else store_message(exc)) from None
    await session.send(PrekeysPublished(request=req.request, one_time_left=counts[0], pq_one_time_left=counts[1]))


async def _stored_identity(ctx: ClientContext, account: str, device: int) -> VerifyKey:
    """The device identity key from its stored record (what others verify prekeys with)."""
    for row in await ctx.store.devices(account):
        if row.device_id == device:
            with refused():
                return verify_device_record(row.record, policy=ctx.policy, account=account).identity
    raise RequestError("device_removed", "this device was removed from its account")


async def fetch_bundles(session: Session, req: FetchBundles) -> None:
    ctx = session.ctx
    require_registered(session)
    account = local_account(ctx, req.account)
    row = await account_row(ctx, account)
    devices = {r.device_id: r for r in await ctx.store.devices(account)}
    wanted = sorted(set(req.devices)) if req.devices else sorted(devices)
    unknown = [d for d in wanted if d not in devices]
    if unknown:  # refused before any one-time key is handed out
        raise RequestError("unknown_recipient", f"{account} has no device {unknown[0]}")
    bundles = []
    for device in wanted:
        keys = await ctx.store.take_bundle(account, device)
        bundles.append(
            Bundle(
                device=device,
                record=devices[device].record,
                signed_prekey=keys.signed_prekey,
                pq_prekey=keys.pq_prekey,
                one_time=keys.one_time,
            )
        )
    await session.send(
        Bundles(
            request=req.request,
            account=account,
            account_identity=row.account_identity,
            device_list=row.device_list,
            bundles=tuple(bundles),
        )
    )


async def sender_certificate(session: Session, req: GetSenderCertificate) -> None:
    ctx = session.ctx
    account, device = require_registered(session)
    certificate = issue_certificate(
        ctx.node_key,
        node=ctx.name,
        account=account,
        device=device,
        identity=session.peer,
        now=ctx.clock_ms(),
        validity_ms=limits.DEFAULT_SENDER_CERT_VALIDITY_MS,
    )
    await session.send(SenderCertificate(request=req.request, certificate=certificate))
