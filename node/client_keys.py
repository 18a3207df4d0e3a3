"""Requests about keys: the account's devices, prekeys, bundles, sender certificates, node keys,
and the key directory.

A device publishes its prekeys (checked by node/client_checks.py off the event loop); another
device of any account fetches the device list (``FetchDevices``), one bundle per device
(``FetchBundles``, handing out one-time keys) or one MLS KeyPackage per device
(``FetchKeyPackages``, the same way; node/client_key_packages.py checks what devices publish);
a registered device gets a sender certificate
signed by the node key, and the identity key of any node (``FetchNodeKey``) to verify the
certificates of senders on other nodes. Lookups for accounts and keys of other nodes go
through the federation service (checked against this node's pins there); ``answer_local``
answers the lookups peers send for this node's accounts.

Every Devices / Bundles / KeyPackages answer for an account of this node carries the directory proof of the
account's newest leaf (node/directory.py), and its identity key and device list are the
leaf's, so what the device verifies is exactly what it uses. ``FetchHead`` and
``FetchConsistency`` give a node's signed head and the proof that it extends an older one
(this node's from its directory, another's through the federation service); ``FetchLeaves``
hands a registered device a stretch of this node's log with the compact range before it, so
that it can audit every leaf between two heads it verified (self-monitoring: a leaf of its
account that it did not add shows up wherever the node put it).

One-time prekeys are handed out within an allowance per (asking account, account asked about)
(node/client_limits.py); past it, and when a peer asks without them (``FetchBundles.one_time``
False, federation/inbound.py), bundles carry only the signed and last-resort prekeys. One-time
KeyPackages have an allowance of their own, past which the last-resort ones are handed out. The
sender certificate comes with the device's account's access token (core/access.py).

The lookups, directory requests and prekey uploads spend the device's cost budget
(node/cost_budget.py: ``admit`` before the work, ``charged`` on the answer).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

import trio

from sonet.core import limits
from sonet.core.certs import issue_certificate
from sonet.core.address import validate_node_name
from sonet.core.client_api import (
    Bundle,
    Bundles,
    Consistency,
    DeviceEntry,
    Devices,
    DirectoryProof,
    ErrorFrame,
    FetchBundles,
    FetchConsistency,
    FetchDevices,
    FetchHead,
    FetchKeyPackages,
    FetchLeaves,
    FetchNodeKey,
    GetSenderCertificate,
    Head,
    KeyPackageEntry,
    KeyPackages,
    Leaves,
    NodeKey,
    PrekeysPublished,
    PublishPrekeys,
    SenderCertificate,
)
from sonet.core.crypto import VerifyKey
from sonet.core.device import verify_device_record
from sonet.core.errors import ProtocolError
from sonet.core.keydir import DirectoryEntry, decode_entry
from sonet.core.wire import Frame

from .client_checks import RequestError, check_prekeys, parse_or_refuse, refused
from .cost_budget import VERIFY_COST, admit, charged
from .client_context import (
    ClientContext,
    Session,
    federation_errors,
    local_account,
    remote,
    require_registered,
    store_message,
)
from .store import StoreError

#: the lookups of an account's keys, answered for this node's accounts or asked of their node
_Lookup = FetchDevices | FetchBundles | FetchKeyPackages
#: the lookups that hand out one-time keys
_OneTime = TypeVar("_OneTime", FetchBundles, FetchKeyPackages)

__all__ = [
    "fetch_devices",
    "publish_prekeys",
    "fetch_bundles",
    "fetch_key_packages",
    "sender_certificate",
    "fetch_node_key",
    "fetch_head",
    "fetch_consistency",
    "fetch_leaves",
    "answer_local",
]


async def fetch_devices(session: Session, req: FetchDevices) -> None:
    require_registered(session)
    admit(session)
    await session.send(charged(session, await _lookup(session.ctx, req)))


async def fetch_bundles(session: Session, req: FetchBundles) -> None:
    require_registered(session)
    admit(session)
    req = await _within_one_time_allowance(session, req)
    await session.send(charged(session, await _lookup(session.ctx, req)))


async def fetch_key_packages(session: Session, req: FetchKeyPackages) -> None:
    require_registered(session)
    admit(session)
    req = await _within_one_time_allowance(session, req)
    await session.send(charged(session, await _lookup(session.ctx, req)))


async def answer_local(ctx: ClientContext, frame: Frame) -> Frame:
    """Answer a FetchDevices / FetchBundles / FetchKeyPackages for an account of this node with
    Devices / Bundles / KeyPackages, or with an ErrorFrame (same request number). The federation
    service calls this for the queries peers send."""
    try:
        if not isinstance(frame, (FetchDevices, FetchBundles, FetchKeyPackages)):
            raise RequestError("unexpected_frame", f"{type(frame).__name__} is not a key lookup")
        return await _local(ctx, frame, local_account(ctx, frame.account))
    except RequestError as exc:
        return ErrorFrame(request=getattr(frame, "request", 0), code=exc.code, message=str(exc))


async def _within_one_time_allowance(session: Session, req: _OneTime) -> _OneTime:
    """``req``, or the same without one-time prekeys (KeyPackages) once the asking account had
    its share of the asked account's (node/client_limits.py ``one_time_allowed``)."""
    ctx = session.ctx
    if ctx.limits is None or not req.one_time:
        return req
    account = str(parse_or_refuse(req.account))
    if isinstance(req, FetchBundles) and req.devices:
        count = len(set(req.devices))
    elif parse_or_refuse(account).node == ctx.name:
        count = len(await ctx.store.devices(account))
    else:
        count = limits.MAX_DEVICES_PER_ACCOUNT
    key_packages = isinstance(req, FetchKeyPackages)
    return req if ctx.limits.one_time_allowed(session, account, count, key_packages=key_packages) else replace(req, one_time=False)


async def _lookup(ctx: ClientContext, req: _Lookup) -> Frame:
    """The answer for an account of this node, or what its own node answered for another's."""
    address = parse_or_refuse(req.account)
    if address.node == ctx.name:
        return await _local(ctx, req, str(address))
    federation = remote(ctx, address.node)
    with federation_errors():
        if isinstance(req, FetchDevices):
            answer: Frame = await federation.remote_devices(str(address))
        elif isinstance(req, FetchKeyPackages):
            answer = await federation.remote_key_packages(str(address), one_time=req.one_time)
        else:
            answer = await federation.remote_bundles(str(address), req.devices, one_time=req.one_time)
    return replace(answer, request=req.request)


async def _local(ctx: ClientContext, req: _Lookup, account: str) -> Devices | Bundles | KeyPackages:
    proof = await ctx.directory.proof(account)
    if proof is None:
        raise RequestError("unknown_account", f"no account {account} on {ctx.name}")
    entry = decode_entry(proof.leaf)
    if not entry.identity:  # its tombstone (sonet-node accounts remove): no keys to hand out
        # named: a peer's answer reaches a device of another node (passed on by its home node)
        raise RequestError("unknown_account", f"{account} was removed from {ctx.name}")
    if isinstance(req, FetchDevices):
        return await _devices(ctx, entry, proof, req)
    if isinstance(req, FetchKeyPackages):
        return await _key_packages(ctx, entry, proof, req)
    return await _bundles(ctx, entry, proof, req)


async def _devices(ctx: ClientContext, entry: DirectoryEntry, proof: DirectoryProof, req: FetchDevices) -> Devices:
    rows = await ctx.store.devices(entry.account)
    return Devices(
        request=req.request,
        account=entry.account,
        account_identity=entry.identity,
        device_list=entry.device_list,
        devices=tuple(DeviceEntry(device=r.device_id, record=r.record) for r in rows),
        proof=proof,
    )


async def _bundles(ctx: ClientContext, entry: DirectoryEntry, proof: DirectoryProof, req: FetchBundles) -> Bundles:
    account = entry.account
    devices = {r.device_id: r for r in await ctx.store.devices(account)}
    wanted = sorted(set(req.devices)) if req.devices else sorted(devices)
    unknown = [d for d in wanted if d not in devices]
    if unknown:  # refused before any one-time key is handed out
        raise RequestError("unknown_recipient", f"{account} has no device {unknown[0]}")
    bundles = []
    for device in wanted:
        keys = await ctx.store.take_bundle(account, device, one_time=req.one_time)
        bundles.append(
            Bundle(
                device=device,
                record=devices[device].record,
                signed_prekey=keys.signed_prekey,
                pq_prekey=keys.pq_prekey,
                one_time=keys.one_time,
            )
        )
    return Bundles(
        request=req.request,
        account=account,
        account_identity=entry.identity,
        device_list=entry.device_list,
        bundles=tuple(bundles),
        proof=proof,
    )


async def _key_packages(ctx: ClientContext, entry: DirectoryEntry, proof: DirectoryProof, req: FetchKeyPackages) -> KeyPackages:
    taken = await ctx.store.take_key_packages(entry.account, one_time=req.one_time)
    return KeyPackages(
        request=req.request,
        account=entry.account,
        account_identity=entry.identity,
        device_list=entry.device_list,
        items=tuple(KeyPackageEntry(device=device, key_package=blob) for device, blob in taken),
        proof=proof,
    )


async def publish_prekeys(session: Session, req: PublishPrekeys) -> None:
    ctx = session.ctx
    account, device = require_registered(session)
    cap = limits.MAX_ONE_TIME_PREKEYS
    if len(req.one_time) > cap or len(req.pq_one_time) > cap:
        raise RequestError("too_many_prekeys", f"at most {cap} one-time prekeys of each kind")
    admit(session, upfront=VERIFY_COST * (2 + len(req.one_time) + len(req.pq_one_time)))  # one check per prekey
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
    access = ctx.requests.token(account, now=ctx.clock_ms()) if ctx.requests is not None else b""
    await session.send(SenderCertificate(request=req.request, certificate=certificate, access=access))


def _node_name(text: str) -> str:
    try:
        return validate_node_name(text, remote=True)
    except ProtocolError as exc:
        raise RequestError("bad_address", str(exc)) from None


async def fetch_node_key(session: Session, req: FetchNodeKey) -> None:
    ctx = session.ctx
    require_registered(session)
    node = _node_name(req.node)
    if node == ctx.name:
        key = ctx.node_key.public.to_bytes()
    else:
        federation = remote(ctx, node)
        with federation_errors():
            key = await federation.node_key(node)
    await session.send(NodeKey(request=req.request, node=node, key=key))


# The key directory --------------------------------------------------------------------------


async def fetch_head(session: Session, req: FetchHead) -> None:
    ctx = session.ctx
    require_registered(session)
    node = _node_name(req.node)
    admit(session)
    if node == ctx.name:
        answer = Head(request=req.request, node=node, head=await ctx.directory.head())
    else:
        federation = remote(ctx, node)
        with federation_errors():
            answer = replace(await federation.remote_head(node), request=req.request)
    await session.send(charged(session, answer))


async def fetch_consistency(session: Session, req: FetchConsistency) -> None:
    ctx = session.ctx
    require_registered(session)
    node = _node_name(req.node)
    admit(session)
    if node == ctx.name:
        try:
            proof = await ctx.directory.consistency(req.first, req.second)
        except ValueError as exc:
            raise RequestError("bad_request", str(exc)) from None
        answer = Consistency(request=req.request, node=node, first=req.first, second=req.second, proof=proof)
    else:
        federation = remote(ctx, node)
        with federation_errors():
            answer = replace(await federation.remote_consistency(node, req.first, req.second), request=req.request)
    await session.send(charged(session, answer))


async def fetch_leaves(session: Session, req: FetchLeaves) -> None:
    ctx = session.ctx
    require_registered(session)
    admit(session)
    try:
        frontier, leaves = await ctx.directory.leaves(req.start, req.end)
    except ValueError as exc:
        raise RequestError("bad_request", str(exc)) from None
    count, total = 0, 0
    for leaf in leaves:
        total += len(leaf)
        if count and total > limits.MAX_LEAVES_BYTES:
            break
        count += 1
    await session.send(charged(session, Leaves(request=req.request, start=req.start, frontier=frontier, leaves=leaves[:count])))
