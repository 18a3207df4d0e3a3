"""Issue 17 acceptance, the poll part: alice@alpha asks bob@beta (real node processes) a poll of
three options; two votes and a close later, both devices' `history` shows the same result; and
a location, contact card and event cross the nodes as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Processes
from .test_federation import federation
from .test_gestures_federation import receive_until, run_json

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)


def test_a_poll_with_three_options_two_votes_and_a_close_shows_the_same_result_on_both_devices(procs: Processes, tmp_path: Path) -> None:
    fed = federation(procs, tmp_path)
    [poll] = run_json(fed.alice, "poll", "bob@beta", "Lunch?", "pizza", "sushi", "salad")
    [got] = receive_until(fed.bob, 1)
    assert (got["id"], got["type"], got["poll"]["options"]) == (poll["id"], "poll", ["pizza", "sushi", "salad"])

    run_json(fed.bob, "vote", poll["id"], "sushi")
    run_json(fed.alice, "vote", poll["id"], "3")
    got = receive_until(fed.alice, 1)
    assert [(o["type"], o["refers_to"], o["option"]) for o in got] == [("vote", poll["id"], 2)]
    [closed] = run_json(fed.alice, "poll-close", poll["id"])
    got = receive_until(fed.bob, 2)
    assert [(o["type"], o["refers_to"]) for o in got] == [("vote", poll["id"]), ("poll_close", poll["id"])]

    results = []
    for home, peer in ((fed.alice, "bob@beta"), (fed.bob, "alice@alpha")):
        [item] = run_json(home, "history", peer)
        assert item["id"] == poll["id"] and item["poll"]["closed"] is True
        results.append([(o["text"], o["votes"], o["voters"]) for o in item["poll"]["options"]])
    assert results[0] == results[1] == [("pizza", 0, []), ("sushi", 1, ["bob@beta"]), ("salad", 1, ["alice@alpha"])]
    assert [(o["votes"], o["voters"]) for o in closed["poll"]["options"]] == [(v, w) for _t, v, w in results[0]]

    run_json(fed.alice, "location", "bob@beta", "52.5163", "13.3777", "--label", "Tor")
    run_json(fed.alice, "contact", "bob@beta", "carol@alpha", "--name", "Carol")
    run_json(fed.alice, "event", "bob@beta", "Standup", "--at", "2027-01-04T09:00Z")
    got = receive_until(fed.bob, 3)
    assert [o["type"] for o in got] == ["location", "contact", "event"]
    assert got[0]["location"]["lat"] == 52.5163 and got[1]["contact"]["addresses"] == ["carol@alpha"]
    assert got[2]["event"]["start_at"] == "2027-01-04T09:00:00.000Z"
