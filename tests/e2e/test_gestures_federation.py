"""Issue 17 acceptance, the gestures part: alice@alpha and bob@beta (real node processes) reply,
react, edit and delete for everyone on a message of their conversation; each shows up in the
other's `recv` as such and `history` shows the result."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import Processes, ok, read_json_lines, sonet_here
from .test_federation import federation

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

#: hang guard while polling (never a performance threshold)
POLL_GUARD_S = 90.0


def receive_until(home: Path, count: int) -> list[dict]:
    """What `recv --json` prints (receipts left out) until ``count`` objects came."""
    got: list[dict] = []
    deadline = time.monotonic() + POLL_GUARD_S
    while len(got) < count and time.monotonic() < deadline:
        got += [o for o in read_json_lines(ok(sonet_here(home, "recv", "--wait", "5", "--json")).out) if o.get("type") != "receipt"]
    return got


def run_json(home: Path, *args: str) -> list[dict]:
    return read_json_lines(ok(sonet_here(home, *args, "--json")).out)


def test_reply_react_edit_delete_across_nodes_show_in_recv_and_history(procs: Processes, tmp_path: Path) -> None:
    fed = federation(procs, tmp_path)
    [sent] = run_json(fed.alice, "send", "bob@beta", "lunch at noon?")
    [got] = receive_until(fed.bob, 1)
    msg = sent["id"]
    assert (got["id"], got["type"], got["text"]) == (msg, "text", "lunch at noon?")

    [reply] = run_json(fed.bob, "reply", msg, "noon works")
    run_json(fed.bob, "react", msg, "👍")
    got = receive_until(fed.alice, 2)
    assert [(o["type"], o["refers_to"]) for o in got] == [("reply", msg), ("reaction", msg)]
    assert got[0]["text"] == "noon works" and got[1]["emoji"] == "👍"

    run_json(fed.alice, "edit", msg, "lunch at 12:30?")
    got = receive_until(fed.bob, 1)
    assert [(o["type"], o["refers_to"], o["text"]) for o in got] == [("edit", msg, "lunch at 12:30?")]
    history = run_json(fed.bob, "history", "alice@alpha")
    assert [(o["id"], o["text"], o["edited"]) for o in history] == [(msg, "lunch at 12:30?", 1), (reply["id"], "noon works", 0)]
    assert history[0]["reactions"] == [{"emoji": "👍", "count": 1, "mine": True}] and history[1]["quote"] == "lunch at 12:30?"

    run_json(fed.alice, "delete", msg, "--everyone")
    got = receive_until(fed.bob, 1)
    assert [(o["type"], o["refers_to"]) for o in got] == [("delete", msg)]
    for home, peer in ((fed.bob, "alice@alpha"), (fed.alice, "bob@beta")):
        history = run_json(home, "history", peer)
        assert [(o["id"], o["deleted"], o["text"], o["versions"]) for o in history][0] == (msg, True, "", [])
