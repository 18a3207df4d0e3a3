"""Issue 17 acceptance, disappearing messages: alice@alpha and bob@beta (real node processes), a
5-second timer; one message bob receives, one waits in beta's mailbox (bob does not receive),
one in alpha's outbox while beta is down. After their time no row of either node's database
names them (not a mailbox or an outbox, nor a dedup record or a delivery-status row: not even
their ids) and neither side's history has them; bob never sees the last two."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from .conftest import NodeProcess, Processes, ok, read_json_lines, register, sonet_here
from .test_federation import POLL_GUARD_S, peer, restart, start

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

TIMER_S = 5


def run_json(home: Path, *args: str) -> list[dict]:
    return read_json_lines(ok(sonet_here(home, *args, "--json")).out)


def tables_naming(node: NodeProcess, needle: bytes) -> set[str]:
    """The tables of the node's database with a row that holds ``needle`` (read-only, beside it)."""
    db = sqlite3.connect(f"file:{node.data / 'node.db'}?mode=ro", uri=True)
    try:
        found = set()
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 - names from the schema
                if any(isinstance(v, bytes) and needle in v for v in row):
                    found.add(table)
                    break
        return found
    finally:
        db.close()


def until(check, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + POLL_GUARD_S
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.2)


def test_a_five_second_timer_clears_both_nodes_and_both_histories(procs: Processes, tmp_path: Path) -> None:
    alpha, beta = start(procs, tmp_path, "alpha"), start(procs, tmp_path, "beta")
    peer(alpha, beta)
    peer(beta, alpha)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(alice, "alice@alpha", alpha)
    register(bob, "bob@beta", beta)
    [hello] = run_json(alice, "send", "bob@beta", "hello")
    until(lambda: any(o.get("id") == hello["id"] for o in run_json(bob, "recv", "--wait", "2")), "bob got hello")

    [timer] = run_json(alice, "timer", "bob@beta", f"{TIMER_S}s")
    assert (timer["type"], timer["timer"], timer["duration"]) == ("timer", TIMER_S * 1000, f"{TIMER_S}s")
    got: list[dict] = []
    until(lambda: got.extend(o for o in run_json(bob, "recv", "--wait", "2") if o["type"] == "timer") or got, "bob saw the timer")
    assert (got[0]["id"], got[0]["duration"]) == (timer["id"], f"{TIMER_S}s")

    # one bob receives (beta remembers its id to refuse a replay, alpha its delivery status)
    [read] = run_json(alice, "send", "bob@beta", "bob reads this one")
    until(lambda: any(o.get("id") == read["id"] for o in run_json(bob, "recv", "--wait", "2")), "bob got the timed one")
    read_id = bytes.fromhex(read["id"])
    until(lambda: "acked_ids" in tables_naming(beta, read_id), "beta remembers the id bob acknowledged")
    assert "deliveries" in tables_naming(alpha, read_id)
    # one in beta's mailbox (bob does not receive it), one in alpha's outbox while beta is down
    [in_mailbox] = run_json(alice, "send", "bob@beta", "waits in beta's mailbox")
    in_mailbox_id = bytes.fromhex(in_mailbox["id"])
    until(lambda: "mailbox" in tables_naming(beta, in_mailbox_id), "beta holds the first one")
    beta.kill()
    [in_outbox] = run_json(alice, "send", "bob@beta", "waits in alpha's outbox")
    assert in_outbox["state"] != "pending", in_outbox  # bob's keys are known: alpha holds it
    in_outbox_id = bytes.fromhex(in_outbox["id"])
    assert "outbox_batches" in tables_naming(alpha, in_outbox_id)  # (the outboxes' table on SQLite: node/store/outbox_log.py)
    sent_at = time.monotonic()
    history = [o for o in run_json(alice, "history", "bob@beta") if o["id"] != read["id"]]  # (which may be gone already)
    assert [o["type"] for o in history] == ["text", "timer", "text", "text"]
    assert history[1]["duration"] == f"{TIMER_S}s" and all(o.get("expires_at") for o in history[2:])
    assert f"you -> bob@beta: set disappearing messages to {TIMER_S}s" in ok(sonet_here(alice, "history", "bob@beta")).out

    time.sleep(max(0.0, sent_at + TIMER_S + 2 - time.monotonic()))  # past their time, and a check of the node's loop
    held = {"mailbox", "outbox_batches"}
    assert not tables_naming(alpha, in_outbox_id) & held, "alpha still holds the message beta never got"
    beta = restart(procs, beta)  # down at its time: its first purge, at start, drops it
    until(lambda: not tables_naming(beta, in_mailbox_id) & held, "beta dropped the one it held")
    for node in (alpha, beta):
        for msg_id in (read_id, in_mailbox_id, in_outbox_id):  # not even a dedup or delivery-status record
            assert tables_naming(node, msg_id) == set(), (node.name, msg_id.hex(), tables_naming(node, msg_id))

    texts = [o for o in run_json(bob, "recv", "--wait", "3") if o["type"] == "text"]
    assert texts == []  # bob never sees them
    for home, peer_address in ((alice, "bob@beta"), (bob, "alice@alpha")):
        ids = [o["id"] for o in run_json(home, "history", peer_address)]
        assert ids == [hello["id"], timer["id"]], (home.name, ids)
