"""Delivery status of sent messages: ask the home node where the texts still on their way to
another node are now (queued in its outbox, refused by the destination, or accepted there) and
record the answer in the device state."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from sonet.core import limits
from sonet.core.address import parse_address
from sonet.core.client_api import EnvelopeStatus, FetchStatus, Statuses
from sonet.core.errors import LocalProtocolError
from sonet.core.federation_api import REFUSALS

from .connection import Connection
from .replies import expect_reply
from .state import DeviceState, SentMessage

__all__ = ["STATUS_BATCH", "refresh_sent"]

#: ids per FetchStatus: every id may name one row per recipient device, all in one answer
STATUS_BATCH = min(limits.MAX_STATUS_IDS, limits.MAX_ARRAY_LEN // limits.MAX_DEVICES_PER_ACCOUNT)


async def refresh_sent(
    state: DeviceState, connect: Callable[[], AbstractAsyncContextManager[Connection]], limit: int
) -> list[SentMessage]:
    """The ``limit`` most recent sent texts (group ones too, client/groups/sent.py), newest
    first, after asking the home node (through a connection from ``connect``, opened only if
    needed) where the 1:1 ones still open are now."""
    if limit < 1:
        raise LocalProtocolError(f"the limit {limit} is not a whole number from 1 up")  # as the CLI's --limit says it
    open_ = [m for m in state.sent_messages(limit) if m.state in ("sent", "queued")]  # 1:1 only: the hub orders group texts
    if open_:
        recipients = {m.id: m.to for m in open_}
        ids = list(recipients)
        rows: list[EnvelopeStatus] = []
        async with connect() as conn:
            for start in range(0, len(ids), STATUS_BATCH):
                chunk = tuple(ids[start : start + STATUS_BATCH])
                reply = await conn.request(lambda n: FetchStatus(request=n, ids=chunk))
                reply = expect_reply(reply, Statuses)
                rows.extend(reply.items)
        updates = []
        for msg_id, to in recipients.items():
            # the rows name the recipient's node, not the account (the home node keeps no
            # record of whom this device writes to): the message id is what matches
            found = _delivery_state([r for r in rows if r.id == msg_id and r.node == parse_address(to).node])
            if found is not None:
                updates.append((msg_id, *found))
        state.update_sent(updates)
    return state.all_sent_messages(limit)


def _delivery_state(rows: list[EnvelopeStatus]) -> tuple[str, str, str] | None:
    """(state, code, message) of a message from the rows of its recipient's devices: queued
    while any is, failed if any was refused, accepted when all are; None if the node knows
    nothing of it (yet, or any more)."""
    queued = [r for r in rows if r.state == "queued"]
    if queued:
        return "queued", queued[0].code, queued[0].message
    failed = [r for r in rows if r.state == "failed"]
    if failed:
        code = failed[0].code
        return "failed", code, REFUSALS.get(code) or failed[0].message or code
    if rows and all(r.state == "accepted" for r in rows):
        return "accepted", "", ""
    return None
