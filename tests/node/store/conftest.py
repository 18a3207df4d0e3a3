"""Fixtures for the store tests: every contract test runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sonet.node.store import SqliteStore, Store

StoreOpener = Callable[[], Awaitable[Store]]

#: Backends the contract suite runs against. A PostgreSQL backend becomes one more entry here
#: (and one more branch in `open_backend`), skipped when no test database is configured.
BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreOpener:
    """A function that opens the same fresh, initially empty store each time it is called."""
    if request.param == "sqlite":
        path = tmp_path / "node.db"
        return lambda: SqliteStore.open(path)
    raise AssertionError(f"unknown backend {request.param!r}")


@pytest.fixture
async def store(open_backend: StoreOpener) -> AsyncIterator[Store]:
    opened = await open_backend()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the SQLite-specific tests keep their database."""
    return tmp_path / "node.db"
