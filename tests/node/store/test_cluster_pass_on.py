"""node/cluster.py passing on what lives between connections for a moment, on the throwaway
PostgreSQL cluster: typing indicators (ephemeral pushes) for a device connected to another
process, and a link slot approved on another process than the one its new device waits on.
Two ``Cluster`` objects in one test stand for two processes (each has its own connections)."""

from __future__ import annotations

import psycopg
import pytest
import trio

from sonet.core.client_api import LinkOffer
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.node.cluster import Cluster
from sonet.node.linking import LinkRegistry
from sonet.node.mailbox import MailboxRegistry
from sonet.node.store.postgres import PostgresStore
from sonet.node.store.postgres_cluster import EPHEMERAL_CHANNEL, ensure_tables, sweep_ephemerals

from .pg_cluster import PgCluster

NOW = 1_700_000_000_000
BOB = ("bob@alpha.example", 1)


@pytest.fixture
async def database(pg_cluster: PgCluster) -> str:
    url = pg_cluster.new_database()
    store = await PostgresStore.open(url)  # migrated
    await store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_tables(conn)
    return url


def typing_envelope(n: int) -> Envelope:
    return Envelope(v=ENVELOPE_VERSION, id=n.to_bytes(16, "big"), to="bob@alpha.example", device=1, expires=2**40, kind=Kind.EPHEMERAL, body=b"typing")


async def test_an_ephemeral_push_reaches_a_device_on_another_process_once(database: str) -> None:
    reg1, reg2 = MailboxRegistry(), MailboxRegistry()
    one = Cluster(database, process="one", registry=reg1)
    two = Cluster(database, process="two", registry=reg2)
    async with trio.open_nursery() as nursery:
        await nursery.start(one.run)
        await nursery.start(two.run)
        with reg2.subscribe(BOB) as bob, reg1.subscribe(("carol@alpha.example", 2)) as carol:
            reg1.push_ephemeral(BOB, typing_envelope(1))  # arrived at process one
            assert await bob.ephemeral.receive() == typing_envelope(1)
            reg2.push_ephemeral(BOB, typing_envelope(2))  # arrived at process two: pushed here once
            assert await bob.ephemeral.receive() == typing_envelope(2)
            reg1.push_ephemeral(BOB, typing_envelope(3))
            assert await bob.ephemeral.receive() == typing_envelope(3)  # not 2 again
            with pytest.raises(trio.WouldBlock):
                carol.ephemeral.receive_nowait()
        nursery.cancel_scope.cancel()
    assert reg1.ephemeral_elsewhere is None and reg2.ephemeral_elsewhere is None


async def test_what_another_role_notifies_is_ignored_and_old_pushes_are_swept(database: str) -> None:
    reg = MailboxRegistry()
    two = Cluster(database, process="two", registry=reg)
    async with trio.open_nursery() as nursery:
        await nursery.start(two.run)
        with reg.subscribe(BOB) as bob, psycopg.connect(database, autocommit=True) as conn:
            conn.execute("INSERT INTO sonet_ephemerals (envelope) VALUES (%s)", (b"not an envelope",))
            (bad,) = conn.execute("SELECT max(id) FROM sonet_ephemerals").fetchone()  # type: ignore[misc]
            for payload in ("nonsense", '[["x"]]', f'[[{bad}, "bob@alpha.example", 1]]', '[[99999, ["bob"], 1]]'):
                conn.execute("SELECT pg_notify(%s, %s)", (EPHEMERAL_CHANNEL, payload))
            # a well-formed one after them: everything before it was read and dropped
            conn.execute("INSERT INTO sonet_ephemerals (envelope) VALUES (%s)", (_encoded(typing_envelope(7)),))
            (good,) = conn.execute("SELECT max(id) FROM sonet_ephemerals").fetchone()  # type: ignore[misc]
            conn.execute("SELECT pg_notify(%s, %s)", (EPHEMERAL_CHANNEL, f'[[{good}, "bob@alpha.example", 1]]'))
            assert await bob.ephemeral.receive() == typing_envelope(7)
            with pytest.raises(trio.WouldBlock):
                bob.ephemeral.receive_nowait()
            conn.execute("UPDATE sonet_ephemerals SET written_at = written_at - interval '1 minute'")
            sweep_ephemerals(conn)
            assert conn.execute("SELECT count(*) FROM sonet_ephemerals").fetchone() == (0,)
        nursery.cancel_scope.cancel()


def _encoded(envelope: Envelope) -> bytes:
    from sonet.core.wire import encode_struct

    return encode_struct(envelope)


class Waiting:
    def __init__(self) -> None:
        self.offers: list[LinkOffer] = []
        self.pushed = trio.Event()

    def push(self, offer: LinkOffer) -> bool:
        self.offers.append(offer)
        self.pushed.set()
        return True


async def test_a_link_approved_on_another_process_is_pushed_where_the_new_device_waits(database: str) -> None:
    store = await PostgresStore.open(database)
    try:
        links1, links3 = LinkRegistry(rng=_counter(1)), LinkRegistry(rng=_counter(1000))
        links1.use(store, lambda: NOW)
        links3.use(store, lambda: NOW)
        one = Cluster(database, process="one", registry=MailboxRegistry(), links=links1)
        three = Cluster(database, process="three", registry=MailboxRegistry(), links=links3)
        async with trio.open_nursery() as nursery:
            await nursery.start(one.run)
            await nursery.start(three.run)
            new_device = Waiting()
            slot = await links1.open(ephemeral=b"eph", owner=new_device, push=new_device.push, now=NOW, device="fp-new")
            offer = LinkOffer(slot=slot.slot, account="bob@alpha.example", provisioning=b"sealed", device_list=b"list")
            await links3.approve(slot.slot, account="bob@alpha.example", offer=offer, now=NOW)
            await new_device.pushed.wait()  # through NOTIFY, no polling (RECHECK_S is 30 s)
            assert new_device.offers == [offer]
            assert (await links1.owned_by(slot.slot, new_device, now=NOW)).approved_for == "bob@alpha.example"
            nursery.cancel_scope.cancel()
        assert links1.elsewhere is None and links3.elsewhere is None
    finally:
        await store.close()


def _counter(start: int):  # type: ignore[no-untyped-def]
    numbers = iter(range(start, 2**31))
    return lambda n: next(numbers).to_bytes(n, "big")
