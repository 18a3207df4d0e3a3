"""Issue 17 item 4 for groups, with real node processes: alice@alpha hosts a group (alpha is its
hub) with bob@beta and sets a 5-second timer. A message sent while bob's device is offline waits
in beta's mailbox; after its time no row of either node names it (not the mailbox row or its
stored body, nor the hub's ref, alice's own copy or any dedup record), and bob's device, when it
comes back, skips it as expired and goes on with the later messages (docs/groups.md
"Disappearing messages on nodes")."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from sonet.core.groups.items import GroupItem
from sonet.core.wire import decode_struct

from .conftest import NodeProcess, Processes, ok, register, sonet_here
from .test_federation import peer, start
from .test_timer_federation import TIMER_S, run_json, tables_naming, until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)


def group_rows(node: NodeProcess, account: str) -> dict[bytes, bytes]:
    """The group items in ``account``'s mailboxes on ``node``: ref -> stored body."""
    db = sqlite3.connect(f"file:{node.data / 'node.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT m.id, b.body FROM mailbox m JOIN group_bodies b ON b.id = m.body_ref WHERE m.account = ? AND m.kind = 3", (account,)
        ).fetchall()
        return {bytes(ref): bytes(body) for ref, body in rows}
    finally:
        db.close()


def test_a_timed_group_message_is_gone_from_both_nodes_and_the_device_goes_on(procs: Processes, tmp_path: Path) -> None:
    alpha, beta = start(procs, tmp_path, "alpha"), start(procs, tmp_path, "beta")
    peer(alpha, beta)
    peer(beta, alpha)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(alice, "alice@alpha", alpha)
    register(bob, "bob@beta", beta)
    ok(sonet_here(bob, "recv"))  # publishes bob's group keys
    [created] = run_json(alice, "group", "create", "hikers", "bob@beta")
    assert created["members"] == ["alice@alpha", "bob@beta"], created
    group = created["id"]
    until(lambda: bob_sees(bob, group), "bob's device joined")

    [timer] = run_json(alice, "timer", "hikers", f"{TIMER_S}s")
    assert timer["timer"] == TIMER_S * 1000
    until(lambda: any(o.get("type") == "timer" for o in run_json(bob, "recv", "--wait", "2")), "bob saw the timer")

    # bob's device is offline: the message waits in beta's mailbox (and in alice's on alpha)
    before = set(group_rows(beta, "bob@beta"))
    [vanishing] = run_json(alice, "send", "hikers", "gone in five seconds")
    assert vanishing["state"] == "ordered", vanishing
    sent_at = time.monotonic()
    new: list[bytes] = []
    until(lambda: new.extend(set(group_rows(beta, "bob@beta")) - before) or new, "beta holds the timed item for bob")
    [ref] = new
    ciphertext = decode_struct(GroupItem, group_rows(beta, "bob@beta")[ref]).message[-64:]
    assert "hub_refs" in tables_naming(alpha, ref) and "group_bodies" in tables_naming(beta, ciphertext)

    time.sleep(max(0.0, sent_at + TIMER_S + 2 - time.monotonic()))  # past its time, and a round of each node's loop
    for node in (alpha, beta):
        assert tables_naming(node, ref) == set(), (node.name, tables_naming(node, ref))
        assert tables_naming(node, ciphertext) == set(), node.name

    # later messages (the timer off, then an untimed text) reach bob's device, which skips the gap
    ok(sonet_here(alice, "timer", "hikers", "off"))
    [after] = run_json(alice, "send", "hikers", "after the gap")
    got: list[dict] = []
    until(lambda: got.extend(run_json(bob, "recv", "--wait", "2")) or any(o.get("id") == after["id"] for o in got), "bob got the later text")
    texts = [o["text"] for o in got if o.get("type") == "text"]
    assert texts == ["after the gap"], got
    assert [o["type"] for o in got if o.get("type") == "timer"] == ["timer"]  # the timer's end


def bob_sees(bob: Path, group: str) -> bool:
    run_json(bob, "recv", "--wait", "1")
    return any(g["id"] == group and g["active"] for g in run_json(bob, "group", "list"))
