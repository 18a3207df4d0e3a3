"""``SendBatch``: envelopes from a device to devices of accounts on this node.

The batch must address exactly the current devices of each recipient account (the sender's own
device left out); otherwise nothing is stored and the device gets a ``DeviceMismatch``.
Ephemeral envelopes are never stored: they go to connections that are online now.
"""

from __future__ import annotations

from core.client_api import Accepted, DeviceMismatch, SendBatch
from core.envelope import Envelope, Kind

from .client_checks import RequestError
from .client_context import Session, local_account, require_registered, store_message
from .mailbox import MailboxKey
from .store import NewEnvelope, StoreError

__all__ = ["send_batch"]


async def send_batch(session: Session, req: SendBatch) -> None:
    ctx = session.ctx
    me, my_device = require_registered(session)
    now = ctx.clock_ms()
    accounts = [local_account(ctx, env.to) for env in req.envelopes]  # normalised
    batch: dict[str, set[int]] = {}
    for account, env in zip(accounts, req.envelopes):
        batch.setdefault(account, set()).add(env.device)
        if env.expires <= now:
            raise RequestError("expired", "envelope already expired")
    current: dict[str, set[int]] = {}
    for account in batch:
        ids = {r.device_id for r in await ctx.store.devices(account)}
        if not ids:
            raise RequestError("unknown_recipient", f"no account {account} on this node")
        if account == me:
            ids.discard(my_device)  # the sender has the message already
        current[account] = ids
    for account, devices in batch.items():
        if devices != current[account]:
            # Nothing stored: the device refetches the account's devices and resends.
            missing, extra = current[account] - devices, devices - current[account]
            await session.send(
                DeviceMismatch(request=req.request, account=account, missing=tuple(sorted(missing)), extra=tuple(sorted(extra)))
            )
            return
    stored: list[NewEnvelope] = []
    ephemeral: list[tuple[MailboxKey, Envelope]] = []
    for account, env in zip(accounts, req.envelopes):
        key = (account, env.device)
        if env.kind == Kind.EPHEMERAL:
            ephemeral.append((key, env))
            continue
        expires = min(env.expires, now + ctx.envelope_ttl_ms)
        stored.append(NewEnvelope(account=key[0], device_id=env.device, id=env.id, expires=expires, kind=env.kind, body=env.body))
    count = 0
    if stored:
        try:
            count = await ctx.store.enqueue(stored, now=now, quota=ctx.quota)
        except StoreError as exc:
            raise RequestError(exc.code, store_message(exc)) from None
    # Durably committed: only now acknowledge and wake the recipients.
    await session.send(Accepted(request=req.request, stored=count))
    ctx.registry.notify((e.account, e.device_id) for e in stored)
    for key, env in ephemeral:
        ctx.registry.push_ephemeral(key, env)
