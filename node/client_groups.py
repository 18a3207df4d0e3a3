"""``CreateGroup`` and ``GroupSubmit``: a device's groups at its home node (docs/groups.md).

- ``CreateGroup``: the node checks the new group (``HubGroup.create``, core/groups/hub.py: the
  GroupInfo signature, the tree, the ``sonet_group`` extension naming this node as hub), and
  that its one leaf is the requesting device (credential and binding), and becomes its hub;
  the creating device is its only member here. A retry after a lost answer is
  answered again.
- ``GroupSubmit``: the submission is recorded for its verdict and, in the same transaction,
  ordered at once when this node is the group's hub (node/store/sqlite_groups.py) or queued in
  the outbox towards the hub. ``GroupQueued`` comes after the commit; then the mailboxes that
  got items and the outboxes that got items are woken.

The checks that cost signature verifications run on a worker thread (the hub's own ordering
runs on the store's thread, inside its transaction).
"""

from __future__ import annotations

import functools

import trio

from sonet.core.address import validate_node_name
from sonet.core.client_api import CreateGroup, GroupCreated, GroupQueued, GroupSubmit
from sonet.core.crypto import VerifyKey
from sonet.core.errors import ProtocolError, RemoteProtocolError
from sonet.core.groups.credential import leaf_member, verify_binding
from sonet.core.groups.hub import HubGroup
from sonet.core.groups.items import GROUP_ID_LEN, MAX_GROUP_MESSAGE_BYTES, MAX_GROUP_WELCOME_BYTES

from .client_checks import RequestError
from .client_context import Session, federation_errors, remote, require_registered
from .group_routing import submit_item
from .store import OverBudget, SenderRemoved, StoreError

__all__ = ["create_group", "group_submit"]


async def create_group(session: Session, req: CreateGroup) -> None:
    ctx = session.ctx
    account, device = require_registered(session)
    if len(req.group) != GROUP_ID_LEN:
        raise RequestError("bad_input", f"a group id is {GROUP_ID_LEN} bytes")
    if len(req.group_info) > MAX_GROUP_MESSAGE_BYTES or len(req.ratchet_tree) > MAX_GROUP_WELCOME_BYTES:
        raise RequestError("bad_input", "the GroupInfo or the ratchet tree is too large")
    create = functools.partial(_checked_group, req, node=ctx.name, account=account, device=device, identity=session.peer)
    try:
        hub = await trio.to_thread.run_sync(create)
    except ProtocolError as exc:
        raise RequestError("invalid", f"the node refused the new group: {exc}") from None
    try:
        await ctx.store.create_group(account=account, device_id=device, group=req.group, state=hub.to_bytes(), now=ctx.clock_ms())
    except SenderRemoved:
        raise RequestError("device_removed", "this device was removed from its account") from None
    except StoreError as exc:
        raise RequestError(exc.code, str(exc)) from None
    await session.send(GroupCreated(request=req.request, group=req.group))


def _checked_group(req: CreateGroup, *, node: str, account: str, device: int, identity: VerifyKey) -> HubGroup:
    """The hub state of the new group, whose one leaf must be this very device: its credential
    names this account, device and device key, and its binding verifies with that key."""
    hub = HubGroup.create(node=node, group=req.group, group_info=req.group_info, ratchet_tree=req.ratchet_tree)
    ((_, leaf),) = hub.public.members()
    creator = leaf_member(leaf)
    if (creator.account, creator.device, creator.fingerprint) != (account, device, identity.fingerprint):
        raise RemoteProtocolError("the group's creator leaf is not this device", code="invalid")
    verify_binding(creator, identity_public=identity.to_bytes(), signature_key=leaf.signature_key)
    return hub


async def group_submit(session: Session, req: GroupSubmit) -> None:
    ctx = session.ctx
    account, device = require_registered(session)
    try:
        hub = validate_node_name(req.hub, remote=True)
        item = submit_item(req)
    except (ProtocolError, ValueError) as exc:
        raise RequestError("bad_input", str(exc)) from None
    if hub != ctx.name:
        with federation_errors():  # e.g. the peer table cannot be read now: "unavailable"
            if not await remote(ctx, hub).is_peer(hub):  # queued for nowhere: refused at once
                raise RequestError("unknown_node", f"the group's hub {hub} is not a peer of this node")
    try:
        effects = await ctx.store.group_submit(
            item, account=account, device_id=device, hub=hub, node=ctx.name, now=ctx.clock_ms(), ttl_ms=ctx.envelope_ttl_ms, quota=ctx.quota
        )
    except OverBudget as exc:  # not now: the device keeps the submission and sends it again later
        raise RequestError(exc.code, str(exc)) from None
    except SenderRemoved:
        raise RequestError("device_removed", "this device was removed from its account") from None
    except StoreError as exc:
        raise RequestError(exc.code, str(exc)) from None
    # Durably committed: only now wake the mailboxes and the outboxes, then answer.
    ctx.registry.notify(effects.mailboxes)
    if effects.dests and ctx.federation is not None:
        ctx.federation.wake(effects.dests)
    await session.send(GroupQueued(request=req.request, ref=req.ref))
