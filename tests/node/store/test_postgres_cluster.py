"""Several node processes on one PostgreSQL database (node/cluster.py,
node/store/postgres_cluster.py), on the throwaway cluster: wake-ups cross processes through
LISTEN/NOTIFY, and each destination's outbox lease has one holder, taken over once it expires.
Two ``Cluster`` objects in one test stand for two processes (each has its own connections)."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
import pytest
import trio

from sonet.node.cluster import Cluster
from sonet.node.mailbox import MailboxRegistry
from sonet.node.store import StoreError
from sonet.node.store.postgres import PostgresStore
from sonet.node.store.postgres_cluster import claim_leases, ensure_tables, parse_payload, payloads, release_leases

from .pg_cluster import PgCluster


class RecordingOutboxes:
    """What a Cluster tells the outbox workers, recorded."""

    def __init__(self) -> None:
        self.woken: list[str] = []
        self.revoked: list[str] = []
        self.leases: Cluster | None = None
        self.changed = trio.Event()

    def share(self, leases: Cluster) -> None:
        self.leases = leases

    def wake_held(self, dests: Iterable[str]) -> None:
        assert self.leases is not None
        held = [d for d in dests if self.leases.holds(d)]
        self.woken += held
        if held:
            self.changed.set()

    def revoke(self, dest: str) -> None:
        self.revoked.append(dest)
        self.changed.set()

    async def until(self, check) -> None:  # type: ignore[no-untyped-def]
        while not check():
            self.changed = trio.Event()
            await self.changed.wait()


@pytest.fixture
async def database(pg_cluster: PgCluster) -> str:
    url = pg_cluster.new_database()
    store = await PostgresStore.open(url)  # migrated
    await store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_tables(conn)
        conn.execute("DROP TABLE sonet_outbox_leases")  # each test starts without leases
        ensure_tables(conn)
    return url


def queue_item(url: str, dest: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO outbox (dest, key, expires, data, queued_at) VALUES (%s, %s, %s, %s, %s)",
            (dest, b"k" + dest.encode(), 2**60, b"item", 0),
        )


def test_payloads_stay_under_the_limit_and_parse_back() -> None:
    keys = [[f"account-{i:05d}@alpha.example", i] for i in range(2000)]
    parts = list(payloads(keys))
    assert len(parts) > 1 and all(len(p.encode()) < 8000 for p in parts)
    assert [k for p in parts for k in parse_payload(p)] == keys
    # whatever else a role of the database sends is ignored, never an error
    assert parse_payload("not json") == [] and parse_payload('{"a": 1}') == [] and parse_payload("") == []


async def test_one_holder_per_destination_until_its_lease_expires(database: str) -> None:
    queue_item(database, "beta.example")
    with psycopg.connect(database, autocommit=True) as conn:
        assert claim_leases(conn, "p1", 0.5) == {"beta.example"}
        assert claim_leases(conn, "p2", 0.5) == set()  # held by p1
        assert claim_leases(conn, "p1", 0.5) == {"beta.example"}  # renewed
        await trio.sleep(0.7)  # p1 did not renew in time (it was killed)
        assert claim_leases(conn, "p2", 0.5) == {"beta.example"}
        assert claim_leases(conn, "p1", 0.5) == set()  # p1 came back: it has lost it
        release_leases(conn, "p2")  # p2 stops
        assert claim_leases(conn, "p1", 10) == {"beta.example"}


async def test_a_store_in_one_process_wakes_a_device_waiting_on_another(database: str) -> None:
    reg1, reg2 = MailboxRegistry(), MailboxRegistry()
    one = Cluster(database, process="one", registry=reg1)
    two = Cluster(database, process="two", registry=reg2)
    async with trio.open_nursery() as nursery:
        await nursery.start(one.run)
        await nursery.start(two.run)
        with reg2.subscribe(("bob@alpha", 1)) as bob, reg2.subscribe(("carol@alpha", 2)) as carol:
            reg1.notify([("bob@alpha", 1)])  # process one stored an envelope for bob's device
            await bob.wait()  # woken through NOTIFY, no polling (RECHECK_S is 30 s)
            assert not carol._event.is_set()
        nursery.cancel_scope.cancel()
    assert reg1.elsewhere is None and reg2.elsewhere is None


async def test_outbox_wakeups_reach_the_holder_and_a_stopped_holders_leases_move(database: str) -> None:
    queue_item(database, "beta.example")
    first, second = RecordingOutboxes(), RecordingOutboxes()
    one = Cluster(database, process="one", registry=MailboxRegistry(), renew_s=0.1)
    two = Cluster(database, process="two", registry=MailboxRegistry(), renew_s=0.1)
    one.attach(first)  # type: ignore[arg-type]
    two.attach(second)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as one_running:
            one_running.start_soon(one.run)
            await first.until(lambda: "beta.example" in first.woken)  # claimed at its first renewal
            one_running.cancel_scope.cancel()  # process one stops: its leases are given up
        await nursery.start(two.run)
        await second.until(lambda: "beta.example" in second.woken)
        assert two.holds("beta.example") and not one.holds("beta.example")
        assert first.revoked == ["beta.example"]  # its worker stopped with it
        # new items queued by a process that does not hold the lease wake the holder
        queue_item(database, "gamma.example")
        await second.until(lambda: "gamma.example" in second.woken)  # two took gamma's lease too
        second.woken.clear()
        other = Cluster(database, process="three", registry=MailboxRegistry(), renew_s=0.1)
        await nursery.start(other.run)
        assert not other.holds("gamma.example")
        other.elsewhere({"gamma.example"})
        await second.until(lambda: "gamma.example" in second.woken)
        nursery.cancel_scope.cancel()


async def test_a_holder_that_cannot_renew_stops_pushing_before_another_may_take_over(database: str) -> None:
    queue_item(database, "beta.example")
    outboxes = RecordingOutboxes()
    one = Cluster(database, process="one", registry=MailboxRegistry(), lease_ttl_s=3.0, renew_s=0.1)
    one.attach(outboxes)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(one.run)
        await outboxes.until(lambda: "beta.example" in outboxes.woken)
        # the database stops answering this process's renewals
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("REVOKE ALL ON sonet_outbox_leases FROM PUBLIC")  # (owner: still allowed)
            conn.execute("ALTER TABLE sonet_outbox_leases RENAME TO sonet_outbox_leases_away")
        await outboxes.until(lambda: outboxes.revoked == ["beta.example"])
        assert not one.holds("beta.example")
        with psycopg.connect(database, autocommit=True) as conn:
            (expires_in,) = conn.execute(
                "SELECT extract(epoch FROM expires_at - clock_timestamp()) FROM sonet_outbox_leases_away"
            ).fetchone()
            # it stopped while the lease still ran: no other process could have pushed yet
            assert expires_in > 0
            conn.execute("ALTER TABLE sonet_outbox_leases_away RENAME TO sonet_outbox_leases")
        nursery.cancel_scope.cancel()


async def test_an_unreachable_database_stops_the_start_in_one_line_without_the_password(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"postgresql://sonet:s3cret@/sonet?host={tmp_path}&port=1"  # no server on that socket
    registry = MailboxRegistry()
    with pytest.raises(StoreError) as caught:
        await Cluster(url, process="one", registry=registry).run()
    message = str(caught.value)
    assert "s3cret" not in message and "cannot open database" in message and "\n" not in message
    assert registry.elsewhere is None
