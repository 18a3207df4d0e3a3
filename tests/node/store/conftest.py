"""Fixtures for the store tests: every contract test runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from sonet.node.store import SqliteStore, Store

from .pg_cluster import PgCluster, running_cluster

#: opens the test's store; keyword arguments go to ``open`` (e.g. ``disk_free``)
StoreOpener = Callable[..., Awaitable[SqliteStore]]

#: Backends the contract suite runs against: SQLite, and PostgreSQL on a throwaway cluster the
#: session starts itself (pg_cluster.py).
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL cluster per test process, started on first use, removed at the end."""
    with running_cluster("the PostgreSQL store tests") as cluster:
        yield cluster


@pytest.fixture(params=BACKENDS)
def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreOpener:
    """A function that opens the same fresh, initially empty store each time it is called."""
    if request.param == "sqlite":
        path = tmp_path / "node.db"
        return lambda **options: SqliteStore.open(path, **options)
    if request.param == "postgresql":
        from sonet.node.store.postgres import PostgresStore

        url = request.getfixturevalue("pg_cluster").new_database()
        return lambda **options: PostgresStore.open(url, **options)
    raise AssertionError(f"unknown backend {request.param!r}")


@pytest.fixture
async def store(open_backend: StoreOpener) -> AsyncIterator[Store]:
    opened = await open_backend()
    try:
        yield opened
    finally:
        await opened.close()


async def database_size(store: Store) -> int:
    """The bytes ``store``'s database holds (what ``max_database_bytes`` is checked against)."""
    from sonet.node.store.dialect import database_bytes

    assert isinstance(store, SqliteStore)  # PostgresStore is one too: same plumbing
    return await store._call(database_bytes)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the SQLite-specific tests keep their database."""
    return tmp_path / "node.db"
