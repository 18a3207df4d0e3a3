"""A disappearing message's id leaves the node with its envelope (node/store/vanishing.py): the
receiving node's dedup record and the sending node's delivery-status row go at the envelope's
expiry; an ordinary envelope's keep their coarser rules."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from sonet.node.store import NewEnvelope, OutboundItem, Quota, SqliteStore, StatusUpdate, Tracking
from sonet.node.store.sqlite_mailbox import ACKED_ID_GRANULARITY_MS

NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000
ROOMY = Quota(max_envelopes=100, max_bytes=1 << 20)
ALICE = "alice@alpha.example"
TIMED_ID, ORDINARY_ID = b"\x01" * 16, b"\x02" * 16
TIMED_EXPIRES = NOW + 5_000


async def with_alice(path: Path) -> SqliteStore:
    store = await SqliteStore.open(path)
    await store.register_account(
        account=ALICE, fingerprint="fp-alice", record=b"r", account_identity=b"k", device_list=b"l", invite_hash=None, now=NOW
    )
    return store


def tables_naming(path: Path, needle: bytes) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        found = set()
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            if any(any(isinstance(v, bytes) and needle in v for v in row) for row in db.execute(f"SELECT * FROM {table}")):  # noqa: S608
                found.add(table)
        return found


def acked_expiry(path: Path, msg_id: bytes) -> int | None:
    with closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT expires FROM acked_ids WHERE id = ?", (msg_id,)).fetchone()
        return None if row is None else row[0]


async def test_a_timed_envelopes_dedup_record_goes_at_its_expiry(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with await with_alice(path) as store:
        timed = NewEnvelope(account=ALICE, device_id=1, id=TIMED_ID, expires=TIMED_EXPIRES, kind=1, body=b"timed")
        ordinary = NewEnvelope(account=ALICE, device_id=1, id=ORDINARY_ID, expires=NOW + 30 * DAY, kind=1, body=b"ordinary")
        assert await store.enqueue([timed, ordinary], now=NOW, quota=ROOMY) == 2
        assert await store.ack(ALICE, 1, [TIMED_ID, ORDINARY_ID], now=NOW + 1_000) == 2
        # the timed one is remembered to its expiry exactly, the ordinary one to its day's end
        assert acked_expiry(path, TIMED_ID) == TIMED_EXPIRES
        rounded = acked_expiry(path, ORDINARY_ID)
        assert rounded is not None and rounded % ACKED_ID_GRANULARITY_MS == 0 and rounded >= NOW + 30 * DAY
        # the node's expiry loop wakes for it, though no envelope is left to expire
        assert await store.next_expiry(after=NOW + 1_000) == TIMED_EXPIRES
        await store.purge_expired(now=TIMED_EXPIRES - 1)
        assert tables_naming(path, TIMED_ID) == {"acked_ids"}
        await store.purge_expired(now=TIMED_EXPIRES)
        assert tables_naming(path, TIMED_ID) == set()
        assert tables_naming(path, ORDINARY_ID) == {"acked_ids"}


async def test_an_envelope_that_arrives_with_a_day_less_to_live_is_remembered_to_its_day(tmp_path: Path) -> None:
    """The line between the two: 29 days and more to live on arrival is an ordinary envelope."""
    path = tmp_path / "node.db"
    async with await with_alice(path) as store:
        env = NewEnvelope(account=ALICE, device_id=1, id=ORDINARY_ID, expires=NOW + 29 * DAY, kind=1, body=b"late")
        await store.enqueue([env], now=NOW, quota=ROOMY)
        await store.ack(ALICE, 1, [ORDINARY_ID], now=NOW)
        assert acked_expiry(path, ORDINARY_ID) == (NOW + 29 * DAY + ACKED_ID_GRANULARITY_MS - 1) // ACKED_ID_GRANULARITY_MS * ACKED_ID_GRANULARITY_MS


async def test_a_timed_envelopes_delivery_row_goes_at_its_expiry_whatever_its_state(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with await with_alice(path) as store:
        items = [
            OutboundItem(
                dest="beta.example", key=msg_id, expires=expires, data=b"transit",
                tracking=Tracking(sender_account=ALICE, sender_device=1, id=msg_id, account="bob@beta.example", device=1),
            )
            for msg_id, expires in ((TIMED_ID, TIMED_EXPIRES), (ORDINARY_ID, NOW + 30 * DAY))
        ]  # fmt: skip
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=items)
        queued = await store.outbox("beta.example", limit=10, max_bytes=1000, now=NOW)
        delivered = [StatusUpdate(id=i, account="bob@beta.example", device=1, state="accepted", code="", at=NOW + 100) for i in (TIMED_ID, ORDINARY_ID)]
        await store.outbox_done("beta.example", [q.seq for q in queued], now=NOW + 100, statuses=delivered)
        assert [r.state for r in await store.deliveries(ALICE, 1, [TIMED_ID, ORDINARY_ID])] == ["accepted", "accepted"]
        assert await store.next_expiry(after=NOW + 100) == TIMED_EXPIRES
        await store.purge_expired(now=TIMED_EXPIRES)
        await store.expire_outbox(now=TIMED_EXPIRES)  # the relay-side dedup key goes too
        assert await store.deliveries(ALICE, 1, [TIMED_ID]) == []
        assert tables_naming(path, TIMED_ID) == set()
        # an ordinary envelope's row stays the grace period, for its device to ask
        assert [r.state for r in await store.deliveries(ALICE, 1, [ORDINARY_ID])] == ["accepted"]


async def test_a_timed_envelope_still_queued_at_its_expiry_leaves_no_delivery_row(tmp_path: Path) -> None:
    """The destination was down all along: the row goes at the expiry though the item was never
    settled; the worker's later 'expired' status finds no row and changes nothing."""
    path = tmp_path / "node.db"
    async with await with_alice(path) as store:
        tracked = Tracking(sender_account=ALICE, sender_device=1, id=TIMED_ID, account="bob@beta.example", device=1)
        item = OutboundItem(dest="beta.example", key=TIMED_ID, expires=TIMED_EXPIRES, data=b"transit", tracking=tracked)
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item])
        await store.purge_expired(now=TIMED_EXPIRES)
        assert await store.deliveries(ALICE, 1, [TIMED_ID]) == []
        [expired] = await store.expired_outbox("beta.example", limit=10, max_bytes=1000, now=TIMED_EXPIRES)
        failed = StatusUpdate(id=TIMED_ID, account="bob@beta.example", device=1, state="failed", code="expired", at=TIMED_EXPIRES)
        await store.outbox_done("beta.example", [expired.seq], now=TIMED_EXPIRES, statuses=[failed])
        assert tables_naming(path, TIMED_ID) == set()
