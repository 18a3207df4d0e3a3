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

from .connection import Connection, NodeError
from .replies import expect_reply
from .state import DeviceState, SentMessage

__all__ = ["STATUS_BATCH", "STATUS_BURST_IDS", "STATUS_IDS_PER_S", "ROW_RETENTION_MS", "refresh_sent"]

#: ids per FetchStatus: every id may name one row per recipient device, all in one answer
STATUS_BATCH = min(limits.MAX_STATUS_IDS, limits.MAX_ARRAY_LEN // limits.MAX_DEVICES_PER_ACCOUNT)
#: the home node's budget for these lookups, per device (node/client_limits.py STATUS_IDS): so
#: many ids at once, then so many a second; a refresh past the burst is paced to it
STATUS_BURST_IDS = 10_000
STATUS_IDS_PER_S = 500
_DAY_MS = 24 * 3600 * 1000
#: how long after a message was sent its home node may still hold its delivery rows: the
#: envelope's longest life, then node/store/base.py DELIVERY_GRACE_MS (7 days), and a day for
#: the two clocks. Older open messages are not asked about: the node has forgotten them, and
#: asking would only spend the budget (they keep their last known state)
ROW_RETENTION_MS = limits.MAX_ENVELOPE_TTL_MS + 7 * _DAY_MS + _DAY_MS
#: tries of one FetchStatus the node refused as over the budget (another command may have spent
#: it), each after waiting as long as the node takes to refill what it asks for
RATE_TRIES = 4
#: a refresh whose pacing takes longer than this says so first
_SAY_AFTER_S = 5.0


async def refresh_sent(
    state: DeviceState, connect: Callable[[], AbstractAsyncContextManager[Connection]], limit: int, *, now: int,
    say: Callable[[str], None] | None = None,
) -> list[SentMessage]:
    """The ``limit`` most recent sent texts (group ones too, client/groups/sent.py), newest
    first, after asking the home node (through a connection from ``connect``, opened only if
    needed) where the 1:1 ones still open are now: those it may still know of (sent within
    ``ROW_RETENTION_MS`` of ``now``), in chunks paced to the node's budget (``say``: a line when
    that takes a while). What the node answered is kept even when it refuses a later chunk;
    that refusal is then a NodeError (``rate_limited``) that says so."""
    if limit < 1:
        raise LocalProtocolError(f"the limit {limit} is not a whole number from 1 up")  # as the CLI's --limit says it
    recent = now - ROW_RETENTION_MS
    # 1:1 only: the hub orders group texts
    open_ = [m for m in state.sent_messages(limit) if m.state in ("sent", "queued") and m.sent_at >= recent]
    if open_:
        recipients = {m.id: m.to for m in open_}
        ids = list(recipients)
        rows: list[EnvelopeStatus] = []
        try:
            async with connect() as conn:
                await _fetch_paced(conn, ids, rows, say)
        finally:
            _update(state, recipients, rows)  # what came, even if the rest did not
    return state.all_sent_messages(limit)


async def _fetch_paced(conn: Connection, ids: list[bytes], rows: list[EnvelopeStatus], say: Callable[[str], None] | None) -> None:
    """FetchStatus for ``ids`` in chunks, the answers' rows added to ``rows``: the first
    STATUS_BURST_IDS at once, the rest at STATUS_IDS_PER_S (the node's bucket, assumed full)."""
    import trio

    wait_s = max(0, len(ids) - STATUS_BURST_IDS) / STATUS_IDS_PER_S
    if say is not None and wait_s > _SAY_AFTER_S:
        say(
            f"asking the home node where {len(ids):,} sent messages are: it answers {STATUS_BURST_IDS:,} at once, then "
            f"{STATUS_IDS_PER_S} a second; about {wait_s:.0f} s"
        )
    tokens, at = float(STATUS_BURST_IDS), trio.current_time()
    for start in range(0, len(ids), STATUS_BATCH):
        chunk = tuple(ids[start : start + STATUS_BATCH])
        now_s = trio.current_time()
        tokens, at = min(float(STATUS_BURST_IDS), tokens + (now_s - at) * STATUS_IDS_PER_S), now_s
        if tokens < len(chunk):
            await trio.sleep((len(chunk) - tokens) / STATUS_IDS_PER_S)
            tokens, at = float(len(chunk)), trio.current_time()
        tokens -= len(chunk)
        items, waited = await _fetch(conn, chunk, len(ids))
        rows.extend(items)
        if waited:  # the node's bucket was emptier than assumed: it is empty now
            tokens, at = 0.0, trio.current_time()


async def _fetch(conn: Connection, chunk: tuple[bytes, ...], total: int) -> tuple[tuple[EnvelopeStatus, ...], bool]:
    """The answer's rows, and whether the node refused the chunk first (then waited for)."""
    import trio

    for attempt in range(1, RATE_TRIES + 1):
        try:
            reply = await conn.request(lambda n: FetchStatus(request=n, ids=chunk))
            return expect_reply(reply, Statuses).items, attempt > 1
        except NodeError as exc:
            if exc.code != "rate_limited":
                raise
            if attempt == RATE_TRIES:
                raise NodeError(
                    "rate_limited",
                    f"the home node refused more delivery status lookups ({exc}): it answers {STATUS_BURST_IDS:,} at once, then "
                    f"{STATUS_IDS_PER_S} a second per device, and {total:,} were asked; try again in a minute, or with a smaller --limit",
                ) from None
            await trio.sleep(attempt * len(chunk) / STATUS_IDS_PER_S)
    raise AssertionError("unreachable")  # (the loop returns or raises)


def _update(state: DeviceState, recipients: dict[bytes, str], rows: list[EnvelopeStatus]) -> None:
    by_id: dict[bytes, list[EnvelopeStatus]] = {}
    for r in rows:
        by_id.setdefault(r.id, []).append(r)
    updates = []
    for msg_id, to in recipients.items():
        # the rows name the recipient's node, not the account (the home node keeps no
        # record of whom this device writes to): the message id is what matches
        node = parse_address(to).node
        found = _delivery_state([r for r in by_id.get(msg_id, ()) if r.node == node])
        if found is not None:
            updates.append((msg_id, *found))
    if updates:
        state.update_sent(updates)


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
