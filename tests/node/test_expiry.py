"""The node drops an envelope at its expiry, not at the next minute's purge (node/expiry.py):
the loop on a fake store under trio's mock clock, then a real node's mailbox."""

from __future__ import annotations

import sqlite3

import pytest
import trio
import trio.testing

from sonet.core.client_api import Accepted, SendBatch
from sonet.node.app import DB_FILE
from sonet.node.expiry import CHECK_S, expiry_loop
from sonet.node.store.base import StoreError

from .conftest import HANG_S, RunningNode
from .kit import opaque_envelope, wall_ms

FULL_S = 60.0


class _FakeStore:
    """Expiries (ms) of stored envelopes; what the loop asked of it, and when."""

    def __init__(self, clock_ms) -> None:  # noqa: ANN001
        self.clock_ms = clock_ms
        self.expiries: list[int] = []
        self.purged_at: list[int] = []
        self.outbox_asked_at: list[int] = []
        self.failures = 0

    async def next_expiry(self, after: int) -> int | None:
        if self.failures:
            self.failures -= 1
            raise StoreError("database is locked")
        later = [e for e in self.expiries if e > after]
        return min(later) if later else None

    async def purge(self, now: int) -> None:
        self.purged_at.append(now)
        self.expiries = [e for e in self.expiries if e > now]

    async def expire_outbox(self) -> None:
        # the workers settle in their own time: nothing leaves here (the item lingers)
        self.outbox_asked_at.append(self.clock_ms())


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def _clock_ms() -> int:
    return int(trio.current_time() * 1000)


async def _run_loop(nursery: trio.Nursery, store: _FakeStore) -> None:
    nursery.start_soon(
        lambda: expiry_loop(
            clock_ms=store.clock_ms, next_expiry=store.next_expiry, purge=store.purge,
            expire_outbox=store.expire_outbox, full_interval_s=FULL_S,
        )
    )  # fmt: skip


async def test_an_envelope_goes_at_its_expiry_not_at_the_next_full_purge(mock_clock: trio.testing.MockClock) -> None:
    store = _FakeStore(_clock_ms)
    start = _clock_ms()
    async with trio.open_nursery() as nursery:
        await _run_loop(nursery, store)
        await trio.sleep(0.5)
        assert store.purged_at == [start]  # the full purge at start
        store.expiries.append(start + 5_000)  # stored with a 5-second timer
        await trio.sleep(4.4)
        assert store.expiries == [start + 5_000] and store.purged_at == [start]
        await trio.sleep(0.2)
        assert store.expiries == []
        assert store.purged_at[1:] == [start + 5_000]  # at its expiry to the ms
        assert store.outbox_asked_at == [start + 5_000]
        nursery.cancel_scope.cancel()


async def test_an_envelope_stored_while_the_loop_sleeps_is_seen_within_a_check(mock_clock: trio.testing.MockClock) -> None:
    store = _FakeStore(_clock_ms)
    start = _clock_ms()
    async with trio.open_nursery() as nursery:
        store.expiries.append(start + 3_600_000)  # the loop would sleep towards this one
        await _run_loop(nursery, store)
        await trio.sleep(10.3)
        store.expiries.append(start + 10_500)  # expires sooner: seen at the next check
        await trio.sleep(1.0)
        assert store.purged_at == [start, start + 11_000]  # the next check (each CHECK_S) found it
        assert store.expiries == [start + 3_600_000]
        nursery.cancel_scope.cancel()


async def test_a_lingering_outbox_item_is_asked_for_once(mock_clock: trio.testing.MockClock) -> None:
    """An outbox item whose push is in flight goes when its answer comes: the loop does not spin
    asking again meanwhile; a later expiry asks again; the full purge keeps its minute."""
    store = _FakeStore(_clock_ms)
    start = _clock_ms()

    async def purge_mailboxes_only(now: int) -> None:
        store.purged_at.append(now)  # the outbox item is not a mailbox row: it stays

    async with trio.open_nursery() as nursery:
        store.expiries += [start + 2_000, start + 7_000]
        nursery.start_soon(
            lambda: expiry_loop(
                clock_ms=_clock_ms, next_expiry=store.next_expiry, purge=purge_mailboxes_only,
                expire_outbox=store.expire_outbox, full_interval_s=FULL_S,
            )
        )  # fmt: skip
        await trio.sleep(FULL_S + 1)
        assert store.outbox_asked_at == [start + 2_000, start + 7_000]
        assert store.purged_at == [start, start + 2_000, start + 7_000, start + int(FULL_S * 1000)]
        nursery.cancel_scope.cancel()


async def test_a_store_failure_does_not_end_the_loop(mock_clock: trio.testing.MockClock) -> None:
    store = _FakeStore(_clock_ms)
    start = _clock_ms()
    async with trio.open_nursery() as nursery:
        await _run_loop(nursery, store)
        await trio.sleep(0.5)
        store.failures = 2
        store.expiries.append(start + 3_000)
        await trio.sleep(3.5 + 2 * CHECK_S)
        assert store.expiries == [] and store.failures == 0
        nursery.cancel_scope.cancel()


def _rows_naming(node: RunningNode, needle: bytes) -> list[str]:
    """The tables of the node's database with a row that holds ``needle`` in some column."""
    db = sqlite3.connect(node.data_dir / DB_FILE)
    try:
        found = []
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 - table names from the schema
                if any(isinstance(v, bytes) and needle in v for v in row):
                    found.append(table)
                    break
        return found
    finally:
        db.close()


async def test_a_node_drops_a_short_lived_envelope_from_the_mailbox_at_its_expiry(running: RunningNode) -> None:
    """Real time (the node's wall clock): an envelope that expires in 1.5 s is gone from the
    database a check after that, long before the minute's purge; its neighbour stays."""
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        stored_at = wall_ms()
        short = opaque_envelope(bob.first, expires=stored_at + 1_500)
        long = opaque_envelope(bob.first)
        async with running.raw(alice.first) as conn:
            reply = await conn.request(lambda n: SendBatch(request=n, envelopes=(short, long), access=()))
            assert isinstance(reply, Accepted) and reply.stored == 2
        assert _rows_naming(running, short.body) == ["mailbox"]
        await trio.sleep(max(0.0, (stored_at + 1_500 - wall_ms()) / 1000) + CHECK_S + 0.3)
        assert _rows_naming(running, short.body) == []
        assert _rows_naming(running, short.id) == []
        assert _rows_naming(running, long.body) == ["mailbox"]
