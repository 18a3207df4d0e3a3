"""Review of group commit without savepoints (node/store/group_commit.py, issue 14 item 1): a
group runs its writes plainly and, when one raises, rolls everything back and runs the whole
group again with a savepoint per write. So every store write must do the same when run twice
from the same state, leaving nothing of the undone first run behind.

Tried here with the real store functions of the relay path (enqueue with tracked items, ack,
outbox settle with statuses, a push with envelopes, reports and relayed items, a registration
that appends a directory leaf) queued as ONE group beside a write that fails: the database ends
exactly as when the same writes run one by one, and every caller gets the same answer. SQLite
only: PostgreSQL runs each write in its own transaction (postgres.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from sonet.node.store import NewEnvelope, OutboundItem, Quota, SqliteStore, StatusUpdate, Tracking

from .test_contract import ALICE, BOB, CAROL, DAY, NOW, ROOMY, env, mid, register
from .one_group import Write, queued_as_one_group

BETA = "beta.example"
RITA = "rita@beta.example"
DAVE = "dave@alpha.example"
#: CAROL's mailbox holds one envelope: a second one is refused (QuotaExceeded)
TIGHT = Quota(max_envelopes=1, max_bytes=1 << 20)



def tracked(n: int, *, device: int = 1) -> OutboundItem:
    tracking = Tracking(sender_account=ALICE, sender_device=1, id=mid(n), account=RITA, device=device)
    return OutboundItem(dest=BETA, key=b"k%d" % n, expires=NOW + DAY, data=b"transit %d" % n, tracking=tracking)


def relayed(n: int) -> OutboundItem:
    return OutboundItem(dest=BETA, key=b"r%d" % n, expires=NOW + DAY, data=b"relayed %d" % n, origin="gamma.example")


async def prepare(store: SqliteStore) -> None:
    """The same state in every store: accounts, a mailbox to ack from, items in the outbox
    (two to settle with the push's statuses, one handed on with a report waiting for it), and
    CAROL's mailbox full."""
    for account in (ALICE, BOB, CAROL):
        await register(store, account)
    await store.enqueue([env(n, to=BOB) for n in range(1, 6)], now=NOW, quota=ROOMY)
    await store.enqueue([], now=NOW, quota=ROOMY, outbound=[tracked(n) for n in range(10, 14)], sender=(ALICE, 1))
    await store.enqueue([env(90, to=CAROL)], now=NOW, quota=TIGHT)
    # item 13 is handed to a relay; its report is on its way
    [*_, last] = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
    await store.outbox_done(BETA, [last.seq], now=NOW + 1)


def settle_two(first_seq: int, second_seq: int) -> Write:
    """The outbox settle of a push that took items 10 and 11, which also carried a report
    back (the seqs are read before the group: the write itself is what is checked)."""
    statuses = [
        StatusUpdate(id=mid(10), account=RITA, device=1, state="accepted", code="", at=NOW + 5),
        StatusUpdate(id=mid(11), account=RITA, device=1, state="failed", code="unknown_device", at=NOW + 5),
    ]
    return lambda s: s.outbox_done(BETA, [first_seq, second_seq], now=NOW + 5, statuses=statuses, reports=[relayed(70)])


async def the_settle(store: SqliteStore) -> Write:
    first, second, *_ = await store.outbox(BETA, limit=10, max_bytes=1 << 20, now=NOW)
    return settle_two(first.seq, second.seq)


#: the writes of the group after the settle, in queue order; each is one store call
WRITES: dict[str, Write] = {
    "enqueue": lambda s: s.enqueue(
        [env(20, to=BOB), env(21, to=BOB)], now=NOW + 2, quota=ROOMY, outbound=[tracked(22), tracked(23, device=2)], sender=(ALICE, 1)
    ),
    "ack": lambda s: s.ack(BOB, 1, [mid(1), mid(2), mid(2), mid(99)], now=NOW + 3),
    "receive": lambda s: s.receive(
        [
            NewEnvelope(account=ALICE, device_id=1, id=mid(30), expires=NOW + DAY, kind=1, body=b"pushed"),
            StatusUpdate(id=mid(13), account=RITA, device=1, state="accepted", code="", at=NOW + 4),
            relayed(31),
            NewEnvelope(account="nobody@alpha.example", device_id=1, id=mid(32), expires=NOW + DAY, kind=1, body=b"x"),
        ],
        now=NOW + 4,
        quota=ROOMY,
    ),
    "register": lambda s: register(s, DAVE, now=NOW + 6),
    "refused": lambda s: s.enqueue([env(40, to=CAROL)], now=NOW + 7, quota=TIGHT),  # CAROL's mailbox is full
    "purge": lambda s: s.purge_expired(now=NOW + 8),
}


def outcome(result: Any) -> Any:
    return type(result).__name__ if isinstance(result, BaseException) else result


async def lead(store: SqliteStore) -> None:
    """A first write, alone in its group: those queued behind it form the next group."""
    await store.add_invite(b"h" * 32, now=NOW, expires_at=NOW + DAY)


async def run_one_by_one(store: SqliteStore, order: list[str]) -> dict[str, Any]:
    outcomes: dict[str, Any] = {}
    await lead(store)
    settled = await (await the_settle(store))(store)
    for name in order:
        try:
            outcomes[name] = await WRITES[name](store)
        except Exception as exc:  # noqa: BLE001 - compared below
            outcomes[name] = exc
    return {k: outcome(v) for k, v in outcomes.items()} | {"settle": settled}


async def run_as_one_group(store: SqliteStore, order: list[str], statements: list[str]) -> tuple[dict[str, Any], list[int]]:
    """``settle`` and then ``order`` queued while the writer is busy: they run as one group."""
    names = ["settle", *order]
    writes = [await the_settle(store), *(WRITES[name] for name in order)]
    assert store._conn is not None
    store._conn.set_trace_callback(statements.append)
    try:
        results, groups = await queued_as_one_group(store, lead, writes)
    finally:
        store._conn.set_trace_callback(None)
    return {name: outcome(r) for name, r in zip(names, results, strict=True)}, groups


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        # (not outbox_meta: its version counts the commits that changed the outboxes, which
        # one group and the writes one by one make differently many of; outbox_log.py)
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'outbox_meta' ORDER BY name")]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}  # noqa: S608 - names from the schema
    finally:
        conn.close()


@pytest.mark.parametrize("refused_at", [0, 2, 5])
async def test_a_group_run_again_after_a_refusal_ends_as_the_writes_one_by_one(tmp_path: Path, refused_at: int) -> None:
    order = ["enqueue", "ack", "receive", "register", "purge"]
    order.insert(refused_at, "refused")

    alone_path, grouped_path = tmp_path / "alone.db", tmp_path / "grouped.db"
    async with await SqliteStore.open(alone_path) as alone:
        await prepare(alone)
        expected = await run_one_by_one(alone, order)
    statements: list[str] = []
    async with await SqliteStore.open(grouped_path) as grouped:
        await prepare(grouped)
        got, groups = await run_as_one_group(grouped, order, statements)

    assert groups == [1, len(order) + 1]  # the lead, then one group: settle and all of ``order``
    assert any(s.startswith("SAVEPOINT w") for s in statements)  # the refusal made it run again
    assert expected["refused"] == "QuotaExceeded"
    assert got == expected
    assert dump(grouped_path) == dump(alone_path)


async def test_a_write_that_succeeded_in_the_undone_run_is_not_reported_stored_when_the_rerun_fails(tmp_path: Path) -> None:
    """The first, plain run of the group stored ``enqueue``; a refusal undid it; the group's
    second run then fails as a whole (its COMMIT): ``enqueue``'s caller must get that error,
    not the result of the undone run, and nothing of it may be stored."""
    path = tmp_path / "node.db"
    async with await SqliteStore.open(path) as store:
        await prepare(store)
        assert store._conn is not None
        store._conn.execute("CREATE TABLE fk_parent (k INTEGER PRIMARY KEY)")
        store._conn.execute("CREATE TABLE fail_commit (p INTEGER REFERENCES fk_parent (k) DEFERRABLE INITIALLY DEFERRED)")
        runs: list[str] = []

        def refuse_and_break_the_commit(conn: Any) -> None:
            runs.append("breaker")
            if len(runs) > 1:  # the second run: a deferred foreign key that fails the COMMIT
                conn.execute("INSERT INTO fail_commit (p) VALUES (-1)")
                return
            raise ValueError("refused the first time")

        outcomes: dict[str, Any] = {}

        async def one(name: str, write: Write) -> None:
            try:
                outcomes[name] = await write(store)
            except Exception as exc:  # noqa: BLE001 - checked below
                outcomes[name] = exc

        await store._limiter.acquire()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "lead", lead)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(one, "enqueue", WRITES["enqueue"])
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(one, "breaker", lambda s: s._transaction(refuse_and_break_the_commit))
            await trio.testing.wait_all_tasks_blocked()
            store._limiter.release()
        assert runs == ["breaker", "breaker"]
        assert outcomes["lead"] is None
        assert type(outcomes["enqueue"]).__name__ == "StoreError" and "FOREIGN KEY" in str(outcomes["enqueue"])
        assert type(outcomes["breaker"]).__name__ == "StoreError"
        assert mid(20) not in [i.id for i in await store.pending(BOB, 1, after_seq=0, limit=100, now=NOW)]
        assert await store.deliveries(ALICE, 1, [mid(22)]) == []
