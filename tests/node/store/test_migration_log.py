"""An operator upgrading sees the database migrate: opening a database at an older schema logs
one line naming both versions (newbie10: `sonet-node run` migrated in silence). A new database
(created at the latest schema) is not news. Both backends."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sonet.node.store.migrations import LATEST_VERSION

from .conftest import StoreOpener
from .old_versions import at_version


@pytest.fixture(params=["sqlite", "postgresql"])
def open_v22(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    return at_version(request, tmp_path, 22, [], backend=request.param)


def _migration_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sonet.node.store" and "migrated" in r.getMessage()]


async def test_opening_an_older_database_says_it_was_migrated(open_v22: Callable[[], Any], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sonet.node.store"):
        store = await open_v22()
        await store.close()
        assert _migration_lines(caplog) == [f"migrated the database from schema version 22 to {LATEST_VERSION}"]
        store = await open_v22()  # already there: nothing more said
        await store.close()
    assert len(_migration_lines(caplog)) == 1


async def test_a_new_database_is_not_news(open_backend: StoreOpener, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sonet.node.store"):
        store = await open_backend()
        await store.close()
    assert _migration_lines(caplog) == []
