"""``FetchStatus``: where the envelopes a device sent to accounts of other nodes are now.

The store keeps one delivery row per (envelope id, recipient node, recipient device) for
envelopes this node's devices sent to other nodes (node/store/base.py ``deliveries``); only the
sending device sees its rows, and they do not name the recipient account (the device knows it). A row still "queued" gets the federation service's note on why the last attempt
towards its node failed, if it did (``wrong_identity``, ``unreachable``, ...); a "failed" row
gets the human message of its refusal code (core.federation_api.REFUSALS; else the code's
meaning, core/errors.py, e.g. ``outbox_damaged``). Envelopes to
accounts of this node have no rows: they are final once ``Accepted``.
"""

from __future__ import annotations

from sonet.core import limits
from sonet.core.client_api import EnvelopeStatus, FetchStatus, Statuses
from sonet.core.errors import CODES
from sonet.core.federation_api import REFUSALS

from .client_checks import RequestError
from .client_context import Session, require_registered
from .store import DeliveryRow

__all__ = ["fetch_status"]

#: a note is one line for a human, whatever the federation service put in it
MAX_NOTE_LEN = 300


async def fetch_status(session: Session, req: FetchStatus) -> None:
    ctx = session.ctx
    account, device = require_registered(session)
    rows = await ctx.store.deliveries(account, device, req.ids)
    if len(rows) > limits.MAX_ARRAY_LEN:  # an id may name up to MAX_DEVICES_PER_ACCOUNT rows
        raise RequestError("too_many_ids", f"these ids name more than {limits.MAX_ARRAY_LEN} envelopes; ask for fewer at once")
    notes: dict[str, tuple[str, str] | None] = {}  # per destination node, asked once
    items = []
    for row in rows:
        if row.state == "queued":
            if row.dest not in notes:
                notes[row.dest] = ctx.federation.queued_note(row.dest) if ctx.federation is not None else None
            code, message = notes[row.dest] or ("", "")
        else:
            code, message = row.code, REFUSALS.get(row.code) or CODES.get(row.code, "")
        items.append(_status(row, code, message))
    await session.send(Statuses(request=req.request, items=tuple(items)))


def _status(row: DeliveryRow, code: str, message: str) -> EnvelopeStatus:
    return EnvelopeStatus(
        id=row.id,
        node=row.dest,
        device=row.device,
        state=row.state,
        code=code,
        message=message[:MAX_NOTE_LEN],
        at=row.updated_at,
    )
