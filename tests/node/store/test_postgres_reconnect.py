"""The PostgreSQL store when its server stops and starts again under it (node/store/postgres.py):
calls fail at once with code "unavailable" while the server is away (not after the pool's
wait for a connection), and the same store serves again once it is back, without reopening."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from sonet.node.store import StoreError
from sonet.node.store.postgres import PostgresStore

from .pg_cluster import PgCluster, running_cluster
from .test_contract import ALICE, BOB, register

#: hang guard while waiting for the store to find its server back (never a performance threshold)
HANG_GUARD_S = 30.0


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    """A cluster of its own: this test stops its server (the session's is shared)."""
    with running_cluster("the reconnection test") as pg:
        yield pg


async def test_calls_fail_at_once_while_the_server_is_away_and_work_after(cluster: PgCluster) -> None:
    store = await PostgresStore.open(cluster.new_database())
    try:
        await register(store, ALICE)
        cluster.stop_server()
        # the pooled connection's loss, then the server's absence: both one line, retryable
        for _ in range(3):
            with pytest.raises(StoreError) as lost:
                await store.devices(ALICE)
            assert lost.value.code == "unavailable"
            assert str(lost.value).startswith("database unavailable: ") and "\n" not in str(lost.value)
        with pytest.raises(StoreError) as refused:
            await register(store, BOB)
        assert refused.value.code == "unavailable"

        cluster.start_server()
        # a failed check of the server is trusted for RECHECK_AFTER_S: poll until a call checks again
        with trio.fail_after(HANG_GUARD_S):
            while True:
                try:
                    devices = await store.devices(ALICE)
                    break
                except StoreError as exc:
                    assert exc.code == "unavailable", exc
                    await trio.sleep(0.05)
        assert [d.device_id for d in devices] == [1]  # nothing lost
        await register(store, BOB)  # writes too, on the new pool
        assert len(await store.devices(BOB)) == 1
    finally:
        await store.close()
