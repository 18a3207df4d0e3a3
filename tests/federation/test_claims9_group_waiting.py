"""docs/security.md, "Groups: what the hub and the other nodes learn": "While an item waits for a
device at its allowance of group items, the node keeps which devices it still has to reach
(`group_waiting`, until the item expires)." test_groups_robust shows the items arrive; nothing
looked at what the member node keeps meanwhile and after: the waiting rows name only its own
device, carry the item's expiry (and go at it), and go as soon as the device was reached."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sonet.core import limits
from sonet.node.app import DB_FILE
from sonet.node import group_budgets
from sonet.node.budget_settings import BudgetSettings
from sonet.node.store import SqliteStore
from tests.node.conftest import NodeParams, StartNode

from .net import until
from .test_groups_robust import _has, drain, group_at_alpha, pair, say, seqs


@pytest.fixture(autouse=True)
def _one_hub_fills_the_whole_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests fill a device's whole allowance of group items from one hub: its share
    (node/group_budgets.py HUB_SHARE; tests/node/store/test_hub12_hub_share.py) is all of it here."""
    monkeypatch.setattr(group_budgets, "HUB_SHARE", 1)


def _waiting(node) -> list[tuple[str, int, int, int]]:  # noqa: ANN001
    return _rows(node.data_dir / DB_FILE)


def _rows(path: Path) -> list[tuple[str, int, int, int]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT account, device_id, seq, expires FROM group_waiting ORDER BY seq").fetchall()
    finally:
        db.close()


async def test_a_member_node_keeps_who_waits_for_an_item_only_until_it_is_reached_or_expires(
    start_node: StartNode, node_params: NodeParams, tmp_path: Path
) -> None:
    node_params.federation = {"expire_interval_s": 0.2}  # alpha's outbox tries again this often
    alpha, beta = await pair(start_node, budgets=BudgetSettings(group_items_per_device=2))
    alice, bob = await alpha.enroll("alice"), await beta.enroll("bob")
    group, alice_mls, _bob_mls = await group_at_alpha(alpha, alice, bob)
    await until(lambda: _has(beta, bob.address, 1), "bob's Welcome")
    for text in (b"one", b"two"):  # bob (offline) has room for one more
        await say(alpha, alice, alice_mls, group, text)
    await until(lambda: _has(beta, bob.address, 2), "bob's second item")
    await until(lambda: bool(_waiting(beta)), "beta noted that bob waits for the third")
    [(account, device, seq, expires)] = _waiting(beta)
    assert (account, device, seq) == (bob.address, 1, 3)
    now = beta.node.clock_ms()
    assert now < expires <= now + limits.DEFAULT_ENVELOPE_TTL_MS  # the item's expiry, no later
    # kept to the item's expiry, and gone at it: on a copy of beta's database, which alpha's
    # retries (every 0.2 s, the item still queued there) cannot note bob waiting in again
    copy = tmp_path / "beta-copy.db"
    source, target = sqlite3.connect(beta.data_dir / DB_FILE), sqlite3.connect(copy)
    with source, target:
        source.backup(target)
    source.close()
    target.close()
    store = await SqliteStore.open(copy)
    try:
        await store.purge_expired(now=expires - 1)
        assert _rows(copy) != []
        await store.purge_expired(now=expires)
        assert _rows(copy) == []
    finally:
        await store.close()
    # bob drains: the item comes with the next push and the row goes at once
    await drain(beta, bob.address)
    await until(lambda: _has(beta, bob.address, 1), "bob's third item")
    assert await seqs(beta, bob.address) == [3]
    assert _waiting(beta) == []
