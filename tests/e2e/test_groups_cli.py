"""The README's group walkthrough with a real ``sonet-node`` process and the ``sonet`` commands
(run in this process, client/cli_groups.py): create with a member, join by ``recv``, send by name
and by id, receive with the group named, info, add, remove; the removed member is told, and the
node's data directory never holds a message text."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from .conftest import Processes, ok, read_json_lines, register, setup_pair, sonet_here, start_pinned_node

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("few_prekeys_for_module")]  # prekeys are not counted here (tests/conftest.py)

ALICE, BOB, CAROL = "alice@localhost", "bob@localhost", "carol@localhost"
_LINE = re.compile(r'^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] (\S+) in "hikers" \(([0-9a-f]{32})\): (.*)$')


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file() and needle in p.read_bytes()]


def test_group_walkthrough(procs: Processes, tmp_path: Path) -> None:
    pair = setup_pair(procs, tmp_path)
    alice, bob, carol = pair.alice, pair.bob, tmp_path / "carol"
    register(carol, CAROL, pair.node)
    for home in (bob, carol):  # each device publishes its group keys with recv
        ok(sonet_here(home, "recv"))

    [created] = read_json_lines(ok(sonet_here(alice, "group", "create", "hikers", BOB, "--json")).out)
    group = created["id"]
    assert (created["members"], created["admins"], created["hub"], created["not_added"]) == ([ALICE, BOB], [ALICE], "localhost", [])

    ok(sonet_here(bob, "recv"))  # bob's device joins
    secret = f"map-{uuid.uuid4().hex}"
    sent = ok(sonet_here(bob, "send", "hikers", secret)).out
    assert sent.startswith(f'sent to "hikers" ({group}): the hub ordered it for every member; id '), sent
    [got] = [m for m in read_json_lines(ok(sonet_here(alice, "recv", "--json")).out) if "group" in m]
    assert (got["from"], got["group"], got["text"]) == (BOB, {"id": group, "name": "hikers"}, secret)

    ok(sonet_here(alice, "send", group, "I bring it"))
    lines = ok(sonet_here(bob, "recv")).out.splitlines()
    assert [_LINE.match(line).groups() for line in lines if _LINE.match(line)] == [(ALICE, group, "I bring it")], lines  # type: ignore[union-attr]

    info = ok(sonet_here(alice, "group", "info", "hikers")).out.splitlines()
    assert info[:2] == [f'group "hikers" ({group})', "hub: localhost  epoch: 1  suite: 0x004d"], info
    assert info[2:] == ["members (2):", f"  {ALICE} (admin)  device 1", f"  {BOB}  device 1"], info

    # bob is not an admin: one line saying so
    refused = sonet_here(bob, "group", "add", "hikers", CAROL)
    assert refused.rc == 1 and refused.out == "" and len(refused.err.splitlines()) == 1 and "only an admin" in refused.err, refused
    [added] = read_json_lines(ok(sonet_here(alice, "group", "add", "hikers", CAROL, "--json")).out)
    assert added["members"] == [ALICE, BOB, CAROL]
    ok(sonet_here(carol, "recv"))
    [listed] = read_json_lines(ok(sonet_here(carol, "group", "list", "--json")).out)
    assert (listed["id"], listed["name"], listed["active"]) == (group, "hikers", True)

    removed = ok(sonet_here(alice, "group", "remove", "hikers", BOB)).out
    assert removed.startswith(f'"hikers" ({group}): removed {BOB}; epoch '), removed
    ok(sonet_here(bob, "recv"))
    [gone] = read_json_lines(ok(sonet_here(bob, "group", "list", "--json")).out)
    assert gone["active"] is False
    late = sonet_here(bob, "send", "hikers", "am I still in?")
    assert late.rc == 1 and late.err == "sonet: error: this device is no longer a member of the group\n", late

    assert _files_containing(tmp_path / "node", secret.encode()) == []


def test_group_commands_with_the_node_down_are_one_line(procs: Processes, tmp_path: Path) -> None:
    node = start_pinned_node(procs, tmp_path / "node")
    home = tmp_path / "kim"
    register(home, "kim@localhost", node)
    register(tmp_path / "lee", "lee@localhost", node)  # lee never ran recv: no group keys yet
    made = ok(sonet_here(home, "group", "create", "solo", "lee@localhost")).out
    assert made.startswith('"solo" (') and made.endswith(
        "): created with only you in it (lee@localhost: no group keys yet, published by their next `sonet recv`; add them then), "
        "hub localhost; epoch 0\n"
    ), made
    [created] = read_json_lines(ok(sonet_here(home, "group", "list", "--json")).out)
    assert created["members"] == ["kim@localhost"]
    [again] = read_json_lines(ok(sonet_here(home, "group", "create", "solo", "--json")).out)
    assert node.terminate() == 0

    # two groups named "solo": the name is refused, offline, naming both ids
    ambiguous = sonet_here(home, "send", "solo", "anyone?")
    assert (ambiguous.rc, ambiguous.out) == (1, ""), ambiguous
    ids = sorted([created["id"], again["id"]])  # listed by creation time, then id: created in the same ms, either order
    assert ambiguous.err in {f"sonet: error: 2 groups are named 'solo': use the id ({a}, {b})\n" for a, b in (ids, ids[::-1])}, ambiguous
    [error] = read_json_lines(sonet_here(home, "group", "add", "solo", BOB, "--json").out)
    assert error["error"]["code"] == "ambiguous_group", error

    # a text is kept on the device (one line, exit 0) and sent when the node is back
    kept = ok(sonet_here(home, "send", created["id"], "anyone?"))
    assert kept.err == "" and len(kept.out.splitlines()) == 1 and kept.out.startswith("queued on this device: cannot connect"), kept
    [pending] = read_json_lines(ok(sonet_here(home, "send", created["id"], "still there?", "--json")).out)
    assert pending["state"] == "pending", pending
    # a change needs the node now: one line
    for argv in (["group", "add", again["id"], BOB], ["group", "leave", created["id"]]):
        down = sonet_here(home, *argv)
        assert down.rc == 1 and down.out == "" and len(down.err.splitlines()) == 1, down
        assert down.err.startswith("sonet: error: cannot connect") and f"{node.url}/client" in down.err, down
        [error] = read_json_lines(sonet_here(home, *argv, "--json").out)
        assert error["error"]["code"] == "unreachable", error
    # what is on the device still reads offline
    assert ok(sonet_here(home, "group", "info", again["id"])).out.splitlines()[-1] == "  kim@localhost (admin)  device 1"
