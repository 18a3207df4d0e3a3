"""What only the SQLite backend promises: durability settings, files, migrations, crashes."""

from __future__ import annotations

import functools
from contextlib import closing
from msgspec.structs import replace
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from sonet.node.store import NewEnvelope, Quota, SqliteStore, StoreError, open_store
from sonet.node.store.migrations import LATEST_VERSION, migrate

REPO = Path(__file__).resolve().parents[3]
NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000
ROOMY = Quota(max_envelopes=100, max_bytes=1 << 20)
ALICE = "alice@alpha.example"


def envelope(n: int, body: bytes = b"ciphertext") -> NewEnvelope:
    return NewEnvelope(account=ALICE, device_id=1, id=n.to_bytes(16, "big"), expires=NOW + DAY, kind=1, body=body)


async def with_alice(path: Path) -> SqliteStore:
    store = await SqliteStore.open(path)
    await store.register_account(
        account=ALICE, fingerprint="fp-alice", record=b"r", account_identity=b"k", device_list=b"l", invite_hash=None, now=NOW
    )
    return store


async def pragma(store: SqliteStore, name: str) -> object:
    # Per-connection settings can only be read on the store's own connection.
    return await store._call(lambda conn: conn.execute(f"PRAGMA {name}").fetchone()[0])


def schema(path: Path) -> list[tuple[str, str, str | None]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").fetchall()


def user_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


async def test_durability_settings_are_in_effect(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as store:
        assert await pragma(store, "journal_mode") == "wal"
        assert await pragma(store, "synchronous") == 2  # FULL
        assert await pragma(store, "foreign_keys") == 1
        assert await pragma(store, "busy_timeout") > 0


async def test_open_store_returns_a_working_sqlite_store(db_path: Path) -> None:
    store = await open_store(db_path)
    try:
        assert isinstance(store, SqliteStore)
        assert (await store.stats())["accounts"] == 0
    finally:
        await store.close()


async def test_database_files_are_private(db_path: Path) -> None:
    async with await with_alice(db_path) as store:
        await store.enqueue([envelope(1)], now=NOW, quota=ROOMY)
        wal = db_path.with_name(db_path.name + "-wal")
        assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600


async def test_data_survives_close_and_reopen(db_path: Path) -> None:
    async with await with_alice(db_path) as store:
        await store.enqueue([envelope(1, b"hello"), envelope(2, b"world")], now=NOW, quota=ROOMY)

    async with await SqliteStore.open(db_path) as store:
        items = await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)
        assert [i.body for i in items] == [b"hello", b"world"]
        assert [d.fingerprint for d in await store.devices(ALICE)] == ["fp-alice"]


async def test_seq_is_never_reused_after_deleting_the_newest(db_path: Path) -> None:
    async with await with_alice(db_path) as store:
        await store.enqueue([envelope(1)], now=NOW, quota=ROOMY)
        [first] = await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)
        await store.ack(ALICE, 1, [first.id], now=NOW)

    async with await SqliteStore.open(db_path) as store:
        await store.enqueue([envelope(2)], now=NOW, quota=ROOMY)
        [second] = await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)
        assert second.seq > first.seq


async def test_another_process_can_add_an_invite_while_open(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as store:
        other = sqlite3.connect(db_path)  # what a separate `sonet-node invite` process does
        try:
            with other:
                other.execute(
                    "INSERT INTO invites (token_hash, created_at, expires_at) VALUES (?, ?, ?)",
                    (b"from-cli", NOW, NOW + DAY),
                )
        finally:
            other.close()

        assert (await store.stats())["invites_open"] == 1
        row = await store.register_account(
            account=ALICE,
            fingerprint="fp-alice",
            record=b"r",
            account_identity=b"k",
            device_list=b"l",
            invite_hash=b"from-cli",
            now=NOW,
        )
        assert row.device_id == 1


async def test_a_write_waits_for_another_process_instead_of_failing(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as store:
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # hold the write lock
            other.execute(
                "INSERT INTO invites (token_hash, created_at, expires_at) VALUES (?, ?, ?)",
                (b"from-cli", NOW, NOW + DAY),
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(store.add_invite, b"mine", now=NOW, expires_at=NOW + DAY))
                await trio.sleep(0.2)  # let the store's write run into the lock
                other.execute("COMMIT")
        finally:
            other.close()

        assert (await store.stats())["invites_open"] == 2


async def test_migrations_are_idempotent_on_reopen(db_path: Path) -> None:
    async with await with_alice(db_path):
        pass
    first_schema = schema(db_path)
    assert user_version(db_path) == LATEST_VERSION

    async with await SqliteStore.open(db_path) as store:
        assert len(await store.devices(ALICE)) == 1
    assert schema(db_path) == first_schema
    assert user_version(db_path) == LATEST_VERSION

    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert migrate(conn) == LATEST_VERSION
    finally:
        conn.close()
    assert schema(db_path) == first_schema


async def test_a_newer_schema_is_refused(db_path: Path) -> None:
    async with await SqliteStore.open(db_path):
        pass
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")

    with pytest.raises(StoreError, match="newer"):
        await SqliteStore.open(db_path)


async def test_a_failing_transaction_is_rolled_back(db_path: Path) -> None:
    class Boom(Exception):
        pass

    def write_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO accounts (account, created_at) VALUES ('mallory@x', 0)")
        raise Boom

    async with await SqliteStore.open(db_path) as store:
        with pytest.raises(Boom):
            await store._transaction(write_then_fail)
        assert (await store.stats())["accounts"] == 0
        await store.add_invite(b"h", now=NOW, expires_at=NOW + DAY)  # no transaction left open
        assert (await store.stats())["invites_open"] == 1


async def test_purge_drops_expired_dedup_records(db_path: Path) -> None:
    async with await with_alice(db_path) as store:
        await store.enqueue([replace(envelope(1), expires=NOW + 30 * DAY)], now=NOW, quota=ROOMY)
        await store.ack(ALICE, 1, [(1).to_bytes(16, "big")], now=NOW)
        assert (await store.stats())["acked_ids"] == 1

        # an ordinary envelope's is kept to the end of the UTC day it expires, and no finer (a
        # disappearing message's to its expiry: tests/node/store/test_vanishing.py)
        day_end = -(-(NOW + 30 * DAY) // DAY) * DAY
        await store.purge_expired(now=day_end - 1)
        assert (await store.stats())["acked_ids"] == 1
        await store.purge_expired(now=day_end)
        assert (await store.stats())["acked_ids"] == 0


async def test_acknowledged_ids_keep_no_time_finer_than_the_day(db_path: Path) -> None:
    async with await with_alice(db_path) as store:
        ids = [n.to_bytes(16, "big") for n in (1, 2, 3)]
        # three ordinary envelopes that arrived (and so expire) a millisecond and a second apart
        for n, offset in zip((1, 2, 3), (0, 1, 1000)):
            await store.enqueue([replace(envelope(n), expires=NOW + 30 * DAY + offset)], now=NOW + offset, quota=ROOMY)
        await store.ack(ALICE, 1, ids, now=NOW + 2000)
    with closing(sqlite3.connect(db_path)) as conn:
        kept = {at for (at,) in conn.execute("SELECT expires FROM acked_ids")}
    # one value for all three: the end of the UTC day they expire, rounded up so that an id is
    # never remembered for less than its envelope's own lifetime
    assert kept == {-(-(NOW + 30 * DAY) // DAY) * DAY}


async def test_closed_store_refuses_use(db_path: Path) -> None:
    store = await SqliteStore.open(db_path)
    await store.close()
    await store.close()  # closing twice is harmless

    with pytest.raises(StoreError, match="closed"):
        await store.stats()


async def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        await SqliteStore.open(tmp_path / "missing-dir" / "node.db")


CRASHING_WRITER = """
import sys, trio
from sonet.node.store import NewEnvelope, Quota, SqliteStore

async def main(path):
    store = await SqliteStore.open(path)
    await store.enqueue(
        [NewEnvelope(account="alice@alpha.example", device_id=1, id=bytes(16),
                     expires=2**62, kind=1, body=b"must survive")],
        now=1, quota=Quota(max_envelopes=10, max_bytes=1000),
    )
    print("ACKED", flush=True)
    await trio.sleep_forever()  # killed here, without closing the store

trio.run(main, sys.argv[1])
"""


@pytest.mark.slow
async def test_acknowledged_envelope_survives_sigkill(db_path: Path) -> None:
    async with await with_alice(db_path):
        pass

    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", CRASHING_WRITER, str(db_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    output = b""
    try:
        while b"ACKED\n" not in output:
            chunk = await proc.stdout.receive_some()
            if not chunk:
                errors = await proc.stderr.receive_some()
                pytest.fail(f"writer exited before acknowledging: {errors.decode(errors='replace')}")
            output += chunk
        os.kill(proc.pid, signal.SIGKILL)  # right after the acknowledgement
    finally:
        if proc.returncode is None:
            proc.kill()  # never leave the writer behind, whatever failed above
        await proc.wait()
        await proc.stdout.aclose()
        await proc.stderr.aclose()
    assert proc.returncode == -signal.SIGKILL

    # The store was never closed: the envelope can only be in the WAL, recovered on open.
    assert db_path.with_name(db_path.name + "-wal").stat().st_size > 0
    async with await SqliteStore.open(db_path) as store:
        items = await store.pending(ALICE, 1, after_seq=0, limit=10, now=2)
        assert [(i.id, i.body) for i in items] == [(bytes(16), b"must survive")]


async def test_migration_2_upgrades_a_version_1_database(db_path: Path) -> None:
    from sonet.node.store.migrations import MIGRATIONS

    # A database as the version-1 software left it: device 2 was removed, 1 and 3 remain.
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO accounts (account, created_at) VALUES (?, ?)", (ALICE, NOW))
        conn.executemany(
            "INSERT INTO devices (account, device_id, fingerprint, record, created_at) VALUES (?, ?, ?, ?, ?)",
            [(ALICE, 1, "fp-1", b"r1", NOW), (ALICE, 3, "fp-3", b"r3", NOW)],
        )
        conn.execute(
            "INSERT INTO mailbox (account, device_id, id, expires, kind, body, size, stored_at) VALUES (?, 3, ?, ?, 1, ?, 4, ?)",
            (ALICE, bytes(16), NOW + DAY, b"kept", NOW),
        )

    async with await SqliteStore.open(db_path) as store:
        assert user_version(db_path) == LATEST_VERSION
        row = await store.account(ALICE)
        # no identity key yet: empty, version 0
        assert row is not None
        assert (row.account_identity, row.device_list, row.device_list_version) == (b"", b"", 0)
        assert [i.body for i in await store.pending(ALICE, 3, after_seq=0, limit=10, now=NOW)] == [b"kept"]
        added = await store.add_device(
            account=ALICE, fingerprint="fp-new", record=b"r", device_list=b"l", expected_version=0, now=NOW
        )
        assert added.device_id == 4  # after the highest id ever seen, not a gap
        assert await store.publish_prekeys(
            ALICE, 4, signed_prekey=b"s", pq_last_resort=None, one_time=[(1, b"o")], pq_one_time=[], max_one_time=5
        ) == (1, 0)


async def test_migration_7_keeps_delivery_rows_without_the_recipient_account(db_path: Path) -> None:
    from sonet.node.store.migrations import MIGRATIONS

    # A version-6 database with a queued delivery row that names the recipient account.
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        for migration in MIGRATIONS[:6]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 6")
        conn.execute(
            "INSERT INTO deliveries VALUES (?, 1, ?, 'bob@beta.example', 2, 'beta.example', 'queued', '', ?, ?)",
            (ALICE, bytes(16), NOW, NOW + DAY),
        )

    async with await SqliteStore.open(db_path) as store:
        [row] = await store.deliveries(ALICE, 1, [bytes(16)])
        assert (row.dest, row.device, row.state, row.expires) == ("beta.example", 2, "queued", NOW + DAY)
    with closing(sqlite3.connect(db_path)) as conn:
        columns = [c[1] for c in conn.execute("PRAGMA table_info(deliveries)")]
        assert "account" not in columns
        assert conn.execute("SELECT count(*) FROM deliveries WHERE dest = 'beta.example'").fetchone() == (1,)


async def test_migration_4_upgrades_a_version_3_database(db_path: Path) -> None:
    from sonet.node.store import OutboundItem, Tracking
    from sonet.node.store.migrations import MIGRATIONS

    # A database as the version-3 software left it: an account with an envelope, two peers.
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        for migration in MIGRATIONS[:3]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 3")
        conn.execute(
            "INSERT INTO accounts (account, created_at, account_identity, device_list, device_list_version,"
            " last_device_id) VALUES (?, ?, x'01', x'02', 1, 1)",
            (ALICE, NOW),
        )
        conn.execute(
            "INSERT INTO devices (account, device_id, fingerprint, record, created_at) VALUES (?, 1, 'fp-1', x'', ?)",
            (ALICE, NOW),
        )
        conn.execute(
            "INSERT INTO mailbox (account, device_id, id, expires, kind, body, size, stored_at) VALUES (?, 1, ?, ?, 1, ?, 4, ?)",
            (ALICE, bytes(16), NOW + DAY, b"kept", NOW),
        )
        conn.executemany(
            "INSERT INTO peers (name, url, fingerprint, via, added_at) VALUES (?, ?, ?, ?, ?)",
            [("beta.example", "ws://b:1", "b" * 32, None, NOW), ("far.example", "ws://f:1", "c" * 32, "beta.example", NOW)],
        )

    async with await SqliteStore.open(db_path) as store:
        assert user_version(db_path) == LATEST_VERSION
        assert [(p.name, p.via, p.key) for p in await store.peers()] == [
            ("beta.example", None, None),
            ("far.example", "beta.example", None),
        ]
        assert [i.body for i in await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)] == [b"kept"]
        assert await store.set_peer_key("far.example", fingerprint="c" * 32, key=b"far key") is True
        tracked = Tracking(sender_account=ALICE, sender_device=1, id=bytes(16), account="rita@far.example", device=1)
        item = OutboundItem(dest="far.example", key=b"k", expires=NOW + DAY, data=b"transit", tracking=tracked)
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=[item])
        assert [q.data for q in await store.outbox("far.example", limit=10, max_bytes=100, now=NOW)] == [b"transit"]
        assert [r.state for r in await store.deliveries(ALICE, 1, [bytes(16)])] == ["queued"]
        assert (await store.stats())["outbox"] == 1


async def test_expire_outbox_forgets_expired_dedup_keys(db_path: Path) -> None:
    from sonet.node.store import OutboundItem

    def sent_keys(conn: sqlite3.Connection) -> int:
        return conn.execute("SELECT count(*) FROM outbox_sent").fetchone()[0]

    async with await SqliteStore.open(db_path) as store:
        items = [OutboundItem(dest="beta.example", key=bytes([n]), expires=NOW + n, data=b"d") for n in (1, 2)]
        await store.enqueue([], now=NOW, quota=ROOMY, outbound=items)
        queued = await store.outbox("beta.example", limit=10, max_bytes=100, now=NOW)
        await store.outbox_done("beta.example", [q.seq for q in queued], now=NOW)
        assert await store._call(sent_keys) == 2

        await store.expire_outbox(now=NOW + 1)
        assert await store._call(sent_keys) == 1
        await store.expire_outbox(now=NOW + 2)
        assert await store._call(sent_keys) == 0


async def test_migration_5_adds_the_directory_and_backfill_gives_old_accounts_their_leaves(db_path: Path) -> None:
    from sonet.core.keydir import decode_entry
    from sonet.node.store.migrations import MIGRATIONS

    # A database as the version-4 software left it: two accounts, no directory.
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        for migration in MIGRATIONS[:4]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 4")
        conn.executemany(
            "INSERT INTO accounts (account, created_at, account_identity, device_list, device_list_version,"
            " last_device_id) VALUES (?, ?, ?, ?, 1, 1)",
            [("zoe@alpha.example", NOW, b"zoe key", b"zoe list"), (ALICE, NOW, b"alice key", b"alice list")],
        )

    async with await SqliteStore.open(db_path) as store:
        assert user_version(db_path) == LATEST_VERSION
        assert await store.directory_hashes(0) == []
        assert await store.latest_head() is None

        assert await store.directory_backfill(now=NOW + 7) == 2
        assert await store.directory_backfill(now=NOW + 8) == 0

        entries = [decode_entry(leaf) for leaf in await store.directory_leaves(0, 3)]
        assert [(e.account, e.identity, e.device_list, e.prev, e.at) for e in entries] == [
            (ALICE, b"alice key", b"alice list", -1, NOW + 7),  # in account-name order
            ("zoe@alpha.example", b"zoe key", b"zoe list", -1, NOW + 7),
        ]


async def test_deduplication_holds_across_the_batched_id_queries(db_path: Path) -> None:
    # enqueue looks ids up 500 at a time: a batch larger than that, partly stored, partly
    # acknowledged, partly new, must store exactly the new ones.
    roomy = Quota(max_envelopes=10_000, max_bytes=1 << 30)
    store = await with_alice(db_path)
    try:
        assert await store.enqueue([envelope(n) for n in range(700)], now=NOW, quota=roomy) == 700
        assert await store.ack(ALICE, 1, [n.to_bytes(16, "big") for n in range(0, 700, 2)], now=NOW) == 350
        again = [envelope(n) for n in range(1200)]  # 0..699 known (stored or acked), 700.. new
        assert await store.enqueue(again, now=NOW, quota=roomy) == 500
        pending = await store.pending(ALICE, 1, after_seq=0, limit=10_000, now=NOW)
        assert sorted(int.from_bytes(p.id, "big") for p in pending) == list(range(1, 700, 2)) + list(range(700, 1200))
    finally:
        await store.close()


async def test_pending_reads_committed_envelopes_while_a_write_is_in_progress(db_path: Path) -> None:
    # The hot reads use their own connection: a long write transaction (here held open on the
    # writer's thread) neither blocks them nor shows them its uncommitted rows.
    import threading

    store = await with_alice(db_path)
    try:
        await store.enqueue([envelope(1)], now=NOW, quota=ROOMY)
        inside, release = threading.Event(), threading.Event()

        def slow_write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO mailbox (account, device_id, id, expires, kind, body, size, stored_at)"
                " VALUES (?, 1, ?, ?, 1, x'00', 1, ?)",
                (ALICE, (2).to_bytes(16, "big"), NOW + DAY, NOW),
            )
            inside.set()
            release.wait(10)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(store._transaction, slow_write)
            await trio.to_thread.run_sync(inside.wait, 10)
            with trio.fail_after(5):  # a hang guard: the read must not wait for the write
                pending = await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)
            assert [int.from_bytes(p.id, "big") for p in pending] == [1]
            release.set()
        pending = await store.pending(ALICE, 1, after_seq=0, limit=10, now=NOW)
        assert [int.from_bytes(p.id, "big") for p in pending] == [1, 2]
    finally:
        await store.close()
