"""``SendBatch``: envelopes from a device to devices of accounts on this node or on others.

The batch must address exactly the current devices of each recipient account (the sender's own
device left out; for an account of another node, the devices its node lists, through the
federation service's cache); otherwise nothing is stored and the device gets a
``DeviceMismatch``. Mailbox envelopes and the outbox items for other nodes are committed in ONE
transaction, so ``Accepted`` means both are durable; ``Accepted.stored`` counts the new mailbox
envelopes only (what the store returns), and the outbox workers of the destination nodes are
woken after the commit. The same transaction checks the stored-bytes budgets (the sending
device's and account's, each destination outbox's, the node's disk reserve): over one, nothing
is stored and the device gets that code ("sender_full", "outbox_full", "disk_full"), a "not
now" after which it keeps the message and sends it again later. Ephemeral envelopes are never stored: they go to connections that are
online now, and those for accounts of other nodes go to their nodes at once, best effort, after
the batch is accepted (federation/ephemeral.py: never queued, dropped if they cannot go now).

The time taken right after the registration check is the envelopes' acceptance time: the mailbox
stores it as ``stored_at`` and delivers it, and a recipient device judges a sender device that
its account removed since by it (delivered only if accepted before the removal:
core/device_list.py ``check_listed_when_accepted``). The transaction that stores a batch also
checks that the sending device still exists: a batch committed before a removal was accepted
first, as it should be; one that comes after the removal committed (its connection is closed
right after, and it cannot connect again) is refused with ``device_removed`` and nothing of it
is stored.
"""

from __future__ import annotations

from dataclasses import replace

from sonet.core.address import Address
from sonet.core.client_api import Accepted, DeviceMismatch, SendBatch
from sonet.core.envelope import Envelope, Kind

from .client_access import check_message_requests
from .client_checks import RequestError, parse_or_refuse
from .client_context import ClientContext, Session, federation_errors, remote, require_registered, store_message
from .mailbox import MailboxKey
from .store import NewEnvelope, OutboundItem, OverBudget, SenderRemoved, StoreError

__all__ = ["send_batch"]


async def send_batch(session: Session, req: SendBatch) -> None:
    ctx = session.ctx
    me, my_device = require_registered(session)
    now = ctx.clock_ms()
    envelopes: list[tuple[Address, Envelope]] = []
    for env in req.envelopes:
        address = parse_or_refuse(env.to)
        if env.expires <= now:
            raise RequestError("expired", "envelope already expired")
        if env.kind == Kind.GROUP:  # only a group's hub makes them (node/client_groups.py)
            raise RequestError("bad_input", "group items are sent with GroupSubmit, not in envelopes")
        if address.node != ctx.name:
            remote(ctx, address.node)  # unknown_node when this node does not federate
        # normalised address, and no longer than this node keeps envelopes
        to, expires = str(address), min(env.expires, now + ctx.envelope_ttl_ms)
        if (to, expires) != (env.to, env.expires):
            env = replace(env, to=to, expires=expires)
        envelopes.append((address, env))
    batch: dict[str, set[int]] = {}
    for _address, env in envelopes:
        batch.setdefault(env.to, set()).add(env.device)
    current = {account: await _current_devices(ctx, account, me, my_device) for account in batch}
    for account, devices in batch.items():
        if devices != current[account]:
            # Nothing stored: the device refetches the account's devices and resends.
            missing, extra = current[account] - devices, devices - current[account]
            await session.send(
                DeviceMismatch(request=req.request, account=account, missing=tuple(sorted(missing)), extra=tuple(sorted(extra)))
            )
            return
    # Message requests (senders without the recipient's access token): a small allowance.
    access = check_message_requests(session, req, envelopes, sender_account=me, now=now)
    stored: list[NewEnvelope] = []
    outbound: list[OutboundItem] = []
    ephemeral: list[tuple[MailboxKey, Envelope]] = []
    remote_ephemeral: list[Envelope] = []
    for address, env in envelopes:
        if address.node != ctx.name and env.kind == Kind.EPHEMERAL:
            remote_ephemeral.append(env)
        elif address.node != ctx.name:
            federation = remote(ctx, address.node)
            token = access.get(env.to, b"")
            # env came out of the decoded SendBatch: its check() passed (replace above keeps it valid)
            outbound.append(federation.outbound(env, sender_account=me, sender_device=my_device, now=now, access=token, checked=True))
        elif env.kind == Kind.EPHEMERAL:
            ephemeral.append(((env.to, env.device), env))
        else:
            stored.append(NewEnvelope(account=env.to, device_id=env.device, id=env.id, expires=env.expires, kind=env.kind, body=env.body))
    count = 0
    if stored or outbound:
        try:
            count = await ctx.store.enqueue(stored, now=now, quota=ctx.quota, outbound=outbound, sender=(me, my_device))
        except OverBudget as exc:  # not now: the device keeps the message and tries again later
            raise RequestError(exc.code, str(exc)) from None
        except SenderRemoved:
            raise RequestError("device_removed", "this device was removed from its account") from None
        except StoreError as exc:
            raise RequestError(exc.code, store_message(exc)) from None
    # Durably committed: only now wake the recipients and the outboxes (before answering, so
    # a device that goes away meanwhile leaves nothing waiting) and acknowledge.
    ctx.registry.notify((e.account, e.device_id) for e in stored)
    if outbound and ctx.federation is not None:
        ctx.federation.wake({item.dest for item in outbound})
    await session.send(Accepted(request=req.request, stored=count))
    for key, env in ephemeral:
        ctx.registry.push_ephemeral(key, env)
    if remote_ephemeral and ctx.federation is not None:
        ctx.federation.send_ephemeral(remote_ephemeral)


async def _current_devices(ctx: ClientContext, account: str, me: str, my_device: int) -> set[int]:
    """The devices a batch must address for ``account``."""
    node = parse_or_refuse(account).node
    if node != ctx.name:
        federation = remote(ctx, node)
        with federation_errors():
            listed = await federation.remote_devices(account)
        return {d.device for d in listed.devices}
    ids = {r.device_id for r in await ctx.store.devices(account)}
    if not ids:
        raise RequestError("unknown_recipient", f"no account {account} on {ctx.name}")
    if account == me:
        ids.discard(my_device)  # the sender has the message already
    return ids
