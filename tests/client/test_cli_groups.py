"""``sonet group ...``, ``sonet send GROUP`` and group messages in ``sonet recv`` (client/cli_groups.py).

First what needs no node: --help of every action, argument mistakes (each one line, or one JSON
error line with --json, before any home is opened), unknown and ambiguous group names, and the
human and JSON shapes of what is printed. Then the commands against an in-process node, the way
a user runs them: create with a member, info, send, recv on the member's device, add, admin,
remove, leave. The CLI runs in a worker thread (it runs its own trio loop; the node runs in the
test's)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from sonet.client import cli
from sonet.client.cli_groups import group_info_lines, group_message_json, group_message_line, group_json
from sonet.client.groups.api import GroupInfoView, GroupMemberView, GroupView
from sonet.client.groups.store import GroupMessage
from sonet.client.sdk import Device
from sonet.client.state import DeviceState

from .conftest import ALICE, BOB, CAROL, HANG_S, RunningNode, link_device

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (tests/conftest.py)

GROUP_ID = "0123456789abcdef0123456789abcdef"
ACTIONS = ("create", "add", "remove", "leave", "list", "info", "admin", "hub", "rename", "topic")


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """``sonet ARGV`` in-process: (exit status, stdout, stderr); a usage error's exit too."""
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(capsys: pytest.CaptureFixture[str], *argv: str | Path, rc: int = 1) -> str:
    """Run; assert exactly one ``sonet: error:`` line on stderr and nothing on stdout; return its text."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (rc, ""), (code, out, err)
    [line] = err.splitlines()
    assert line.startswith("sonet: error: "), err
    return line[len("sonet: error: "):]


def json_error(capsys: pytest.CaptureFixture[str], *argv: str | Path, rc: int = 1) -> dict:
    """Run with --json; assert exactly one JSON error line on stdout; return its error."""
    code, out, _err = run(capsys, *argv, "--json")
    assert code == rc, (code, out)
    [line] = out.splitlines()
    error = json.loads(line)["error"]
    assert set(error) == {"code", "message"}, error
    return error


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A device home with state and no group (registration is not needed to read groups)."""
    path = tmp_path / "home"
    DeviceState(path).close()
    return path


# --help --------------------------------------------------------------------------------------


def test_group_help_lists_every_action(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "group", "--help")
    assert rc == 0
    for action in ACTIONS:
        assert f"    {action} " in out, (action, out)
    assert "32 hex digits" in out and "sonet send GROUP TEXT" in out


@pytest.mark.parametrize("action", ACTIONS)
def test_every_group_action_has_help_and_json(capsys: pytest.CaptureFixture[str], action: str) -> None:
    rc, out, err = run(capsys, "group", action, "--help")
    assert (rc, err) == (0, "")
    usage, description = out.split("\n\n")[:2]
    assert usage.startswith(f"usage: sonet group {action} [-h] [--json]"), usage
    assert len(description.split()) >= 5, description  # says what it does, not just the name


def test_send_and_recv_help_mention_groups(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "send", "--help")
    assert "ADDRESS|GROUP" in out and "group's id" in " ".join(out.split())
    _, out, _ = run(capsys, "recv", "--help")
    assert "group ({id, name})" in " ".join(out.split())


# Argument mistakes: one line, before any home is opened -------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["group", "create", "bob@alpha", "carol@alpha"], "bad_input", "a group name cannot contain '@'"),
        (["group", "create", "x" * 129], "bad_input", "a group name is 1 to 128 bytes"),
        (["group", "create", ""], "bad_input", "a group name is 1 to 128 bytes"),
        # the address and node name checks of core/address.py, with their code as in `sonet send`
        # (bad_address: a user's typo; it was local_error, the code of a bug, until cli10)
        (["group", "create", "hikers", "bob"], "bad_address", "invalid address 'bob'"),
        (["group", "add", "hikers", "bob@alpha", "not an address"], "bad_address", "invalid address 'not an address'"),
        (["group", "remove", "hikers", "@alpha"], "bad_address", "invalid user name ''"),
        (["group", "admin", "hikers", "bob@"], "bad_address", "invalid node name ''"),
        (["group", "hub", "hikers", "no spaces allowed"], "bad_address", "invalid node name 'no spaces allowed'"),
    ],
)
def test_bad_arguments_are_one_line_and_open_no_home(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], code: str, says: str
) -> None:
    missing = tmp_path / "nowhere"
    line = one_error(capsys, "--home", missing, *argv)
    assert says in line, line
    assert json_error(capsys, "--home", missing, *argv) == {"code": code, "message": line}
    assert not missing.exists()


@pytest.mark.parametrize("file", [False, True])
def test_crypto_mode_to_a_group_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, file: bool) -> None:
    """Options that do not go together are usage errors, exit 2, everywhere (ux11: this one
    was bad_input, exit 1; with --file it was not checked at all); the usage it quotes is the
    form used (ux12: with --file it quoted the text's)."""
    missing = tmp_path / "nowhere"
    argv = ["send", "hikers", *(["--file", tmp_path / "a.txt"] if file else ["hi"]), "--crypto-mode", "pq"]
    line = one_error(capsys, "--home", missing, *argv, rc=2)
    usage = "sonet send ADDRESS --file PATH [TEXT] --crypto-mode M" if file else "sonet send ADDRESS TEXT --crypto-mode M"
    assert line == f"--crypto-mode is for 1:1 sessions: every group uses the suite 0x004D (usage: {usage})", line
    assert json_error(capsys, "--home", missing, *argv, rc=2) == {"code": "usage", "message": line}
    assert not missing.exists()


@pytest.mark.parametrize(
    "argv",
    [["group"], ["group", "create"], ["group", "add", "hikers"], ["group", "remove", "hikers"], ["group", "leave"],
     ["group", "info"], ["group", "admin", "hikers"], ["group", "hub", "hikers"], ["group", "rename", "x"],
     ["group", "list", "extra"]],
)  # fmt: skip
def test_usage_errors_exit_2_and_follow_json(capsys: pytest.CaptureFixture[str], home: Path, argv: list[str]) -> None:
    rc, out, err = run(capsys, "--home", home, *argv)
    assert (rc, out) == (2, "") and "error:" in err.splitlines()[-1]
    assert json_error(capsys, "--home", home, *argv, rc=2)["code"] == "usage"


def test_group_create_without_a_name_names_only_what_is_missing(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    """Found by newbie10: the line said "required: NAME, ADDRESS", though a group may be created
    with no members (`group create NAME [ADDRESS...]`)."""
    rc, _out, err = run(capsys, "--home", home, "group", "create")
    assert rc == 2 and err.splitlines()[-1] == "sonet group create: error: the following arguments are required: NAME", err


# Naming a group ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["group", "info", "hikers"], ["group", "add", "hikers", BOB], ["group", "remove", "hikers", BOB], ["group", "leave", "hikers"],
     ["group", "admin", "hikers", BOB], ["group", "hub", "hikers", "beta.example"], ["group", "info", GROUP_ID]],
)  # fmt: skip
def test_an_unknown_group_is_one_line_without_a_node(capsys: pytest.CaptureFixture[str], home: Path, argv: list[str]) -> None:
    # the home has no profile and no node: the name is resolved before anything is sent
    line = one_error(capsys, "--home", home, *argv)
    assert line == f"no group {argv[2]!r} on this device (`sonet group list` shows them)"
    assert json_error(capsys, "--home", home, *argv) == {"code": "unknown_group", "message": line}


@pytest.mark.parametrize("target", ["hikers", GROUP_ID, "bob"])
def test_send_to_neither_a_group_nor_an_address_says_both(capsys: pytest.CaptureFixture[str], home: Path, target: str) -> None:
    line = one_error(capsys, "--home", home, "send", target, "hi")
    assert line == (
        f"no group {target!r} on this device (`sonet group list` shows them); "
        f"as an address: invalid address {target!r} (expected user@node, like alice@alpha.example)"
    )
    assert json_error(capsys, "--home", home, "send", target, "hi") == {"code": "unknown_group", "message": line}


def test_an_empty_group_list(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    assert run(capsys, "--home", home, "group", "list") == (0, "", "no groups (`sonet group create NAME` makes one)\n")
    assert run(capsys, "--home", home, "group", "list", "--json") == (0, "", "")  # zero groups, zero lines


# What is printed ---------------------------------------------------------------------------------


def test_a_group_message_names_its_group() -> None:
    m = GroupMessage(
        group=bytes.fromhex(GROUP_ID), seq=7, sender=BOB, device=2, id=b"\xaa" * 16, sent_at=1_796_000_000_123,
        received_at=1_796_000_001_000, text="hi all", group_name="hikers",
    )  # fmt: skip
    assert group_message_json(m) == {
        "id": "aa" * 16, "from": BOB, "device": 2, "group": {"id": GROUP_ID, "name": "hikers"}, "sent_at": "2026-11-30T00:53:20.123Z",
        "received_at": "2026-11-30T00:53:21.000Z", "type": "text", "text": "hi all",
    }  # fmt: skip
    assert group_message_line(m) == f'[2026-11-30T00:53:20.123Z] {BOB} in "hikers" ({GROUP_ID}): hi all'
    unnamed = GroupMessage(**{**m.__dict__, "group_name": ""})
    assert group_message_line(unnamed) == f"[2026-11-30T00:53:20.123Z] {BOB} in {GROUP_ID}: hi all"
    assert group_message_json(unnamed)["group"] == {"id": GROUP_ID, "name": ""}


def test_group_info_shows_members_with_devices_and_admins() -> None:
    info = GroupInfoView(
        id=GROUP_ID, name="hikers", topic="Saturday", epoch=4, hub="alpha.example", suite="0x004d",
        members=(GroupMemberView(account=ALICE, devices=(1,), admin=True), GroupMemberView(account=BOB, devices=(1, 3), admin=False)),
        admins=(ALICE,), active=True, waiting=False,
    )  # fmt: skip
    assert group_info_lines(info).splitlines() == [
        f'group "hikers" ({GROUP_ID})',
        "topic: Saturday",
        "hub: alpha.example  epoch: 4  suite: 0x004d",
        "members (2):",
        f"  {ALICE} (admin)  device 1",
        f"  {BOB}  devices 1, 3",
    ]
    view = GroupView(id=GROUP_ID, name="", topic="", epoch=0, hub="alpha.example", members=(ALICE,), admins=(ALICE,), active=False, waiting=True)
    assert group_json(view) == {
        "id": GROUP_ID, "name": "", "topic": "", "epoch": 0, "hub": "alpha.example", "members": [ALICE], "admins": [ALICE],
        "active": False, "waiting": True,
    }  # fmt: skip


# Against a node --------------------------------------------------------------------------------

Register = Callable[..., Awaitable[Device]]


async def cli_run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """``sonet ARGV`` in a worker thread while the node runs in the test's trio loop."""
    rc = await trio.to_thread.run_sync(cli.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


async def cli_json(capsys: pytest.CaptureFixture[str], device: Device, *argv: str) -> list[dict]:
    rc, out, err = await cli_run(capsys, "--home", device.state.home, *argv, "--json")
    assert rc == 0, (out, err)
    return [json.loads(line) for line in out.splitlines()]


async def test_a_group_from_the_command_line(alpha: RunningNode, register: Register, make_device: Callable[..., Device], capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(HANG_S * 4):
        alice, bob, carol = await register(alpha, "alice"), await register(alpha, "bob"), await register(alpha, "carol")
        bob2 = make_device("bob2")
        await link_device(bob2, bob, alpha.url)
        for device in (alice, bob, bob2, carol):  # KeyPackages go up with the first receive
            await device.receive()

        # create with bob: every device of bob's is in, alice is the admin, alpha the hub
        [created] = await cli_json(capsys, alice, "group", "create", "hikers", BOB)
        group_id = created["id"]
        assert len(group_id) == 32 and created["name"] == "hikers" and created["members"] == [ALICE, BOB]
        assert (created["admins"], created["hub"], created["waiting"], created["active"]) == ([ALICE], alpha.config.name, False, True)
        rc, out, _ = await cli_run(capsys, "--home", alice.state.home, "group", "info", "hikers")
        assert rc == 0 and out.splitlines()[0] == f'group "hikers" ({group_id})'
        assert f"  {ALICE} (admin)  device 1" in out and f"  {BOB}  devices 1, 2" in out and "suite: 0x004d" in out

        # bob's phone learns the group with recv (told it was added), lists it, and sends by name
        [joined] = await cli_json(capsys, bob, "recv")
        assert {k: joined[k] for k in ("type", "event", "group", "by", "member")} == {
            "type": "group_event", "event": "added", "group": {"id": group_id, "name": "hikers"}, "by": ALICE, "member": BOB,
        }
        assert await cli_json(capsys, bob, "recv") == []  # once
        [listed] = await cli_json(capsys, bob, "group", "list")
        assert (listed["id"], listed["name"], listed["members"]) == (group_id, "hikers", [ALICE, BOB])
        [sent] = await cli_json(capsys, bob, "send", "hikers", "who brings the map?")
        assert sent["group"] == {"id": group_id, "name": "hikers"} and sent["state"] == "ordered" and len(sent["id"]) == 32
        rc, out, _ = await cli_run(capsys, "--home", alice.state.home, "send", group_id, "I do")
        assert rc == 0 and out.startswith(f'sent to "hikers" ({group_id}): the hub ordered it for every member; id ')

        # alice sees bob's message in JSON with its group; bob's laptop sees both, as lines
        [got] = await cli_json(capsys, alice, "recv")
        assert {k: got[k] for k in ("from", "device", "group", "type", "text")} == {
            "from": BOB, "device": 1, "group": {"id": group_id, "name": "hikers"}, "type": "text", "text": "who brings the map?"
        }
        assert got["id"] == sent["id"] and got["sent_at"].endswith("Z")
        rc, out, _ = await cli_run(capsys, "--home", bob2.state.home, "recv")
        assert f"] {ALICE} delivered 1 message\n" in out  # her device's receipt for bob's phone's text, to every device of his
        lines = [line for line in out.splitlines() if " delivered " not in line]
        assert rc == 0 and len(lines) == 3, out
        assert lines[0].endswith(f'] you were added to "hikers" ({group_id}) by {ALICE}')
        assert lines[1].endswith(f'] {BOB} in "hikers" ({group_id}): who brings the map?')
        assert lines[2].endswith(f'] {ALICE} in "hikers" ({group_id}): I do')
        assert await cli_json(capsys, bob2, "recv") == []  # shown once

        # only admins add: bob may not add carol; alice may, then makes her an admin
        error = json_error_of(await cli_run(capsys, "--home", bob.state.home, "group", "add", "hikers", CAROL, "--json"))
        assert error["code"] == "not_allowed", error
        [added] = await cli_json(capsys, alice, "group", "add", "hikers", CAROL)
        assert added["members"] == [ALICE, BOB, CAROL] and added["epoch"] == created["epoch"] + 1
        await carol.receive()
        [made] = await cli_json(capsys, alice, "group", "admin", "hikers", CAROL)
        assert made["admins"] == [ALICE, CAROL]

        # remove bob: his devices see the group as left
        rc, out, _ = await cli_run(capsys, "--home", alice.state.home, "group", "remove", "hikers", BOB)
        assert rc == 0 and out.startswith(f'"hikers" ({group_id}): removed {BOB}; epoch ')
        [info] = await cli_json(capsys, alice, "group", "info", group_id)
        assert [(m["account"], m["devices"], m["admin"]) for m in info["members"]] == [(ALICE, [1], True), (CAROL, [1], True)]
        events = [(e["event"], e["by"], e["member"]) for e in await cli_json(capsys, bob, "recv") if e.get("type") == "group_event"]
        assert events == [("added", ALICE, CAROL), ("admin", ALICE, CAROL), ("removed", ALICE, BOB)]
        rc, out, _ = await cli_run(capsys, "--home", bob2.state.home, "recv")
        assert rc == 0 and out.splitlines()[-1].endswith(f'] you were removed from "hikers" ({group_id}) by {ALICE}'), out
        [gone] = await cli_json(capsys, bob, "group", "list")
        assert gone["active"] is False
        error = json_error_of(await cli_run(capsys, "--home", bob.state.home, "send", "hikers", "still here?", "--json"))
        assert error["code"] == "not_member", error

        # a removed member cannot remove others
        error = json_error_of(await cli_run(capsys, "--home", bob.state.home, "group", "remove", "hikers", CAROL, "--json"))
        assert error["code"] == "not_member", error

        # the hub moves only to a node of a member: refused on the device, in one line that says so
        rc, out, err = await cli_run(capsys, "--home", alice.state.home, "group", "hub", "hikers", "elsewhere.example")
        assert (rc, out) == (1, "") and len(err.splitlines()) == 1
        assert err == "sonet: error: not allowed: the new hub elsewhere.example is not the node of a member\n"

        # carol leaves (alice is still an admin, so she may)
        [left] = await cli_json(capsys, carol, "group", "leave", "hikers")
        assert left == {"group": {"id": group_id, "name": "hikers"}, "left": True, "closed": False}


async def test_the_only_member_leaving_closes_the_group(alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by cli10: `group leave` by a group's only member printed left: true, and the group
    stayed active, taking messages (a proposal to remove itself that nobody stays to commit)."""
    with trio.fail_after(HANG_S * 2):
        alice = await register(alpha, "alice")
        [created] = await cli_json(capsys, alice, "group", "create", "solo")
        group_id = created["id"]
        rc, out, _ = await cli_run(capsys, "--home", alice.state.home, "group", "leave", "solo")
        assert rc == 0 and out == f'left "solo" ({group_id}): you were its only member: it is closed\n', out
        [listed] = await cli_json(capsys, alice, "group", "list")
        assert listed["active"] is False
        error = json_error_of(await cli_run(capsys, "--home", alice.state.home, "send", "solo", "anyone?", "--json"))
        assert error["code"] == "not_member", error


async def test_the_only_member_leaving_fails_what_still_waited_to_be_sent(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ux11: the solo leave closed the group and dropped its waiting sends without a word: they
    stayed "pending" in `sent` for good. Failed now, "not_member", as a removed member's are."""
    from sonet.client.groups.engine import GroupEngine

    with trio.fail_after(HANG_S * 2):
        alice = await register(alpha, "alice")
        view = await alice.group_create("solo", [])

        async def held(self: GroupEngine, conn: object) -> None:  # the message waits on the device (the hub is away)
            pass

        monkeypatch.setattr(GroupEngine, "flush", held)
        sent = await alice.group_send(view.id, "anyone?")
        assert sent.state == "pending"
        assert await alice.group_leave("solo") is True
        [listed] = await cli_json(capsys, alice, "sent")
        assert (listed["id"], listed["state"], listed["code"]) == (sent.id.hex(), "failed", "not_member"), listed


def json_error_of(result: tuple[int, str, str]) -> dict:
    rc, out, _err = result
    [line] = out.splitlines()
    assert rc == 1, result
    return json.loads(line)["error"]


async def test_group_add_names_who_has_no_group_keys_yet(alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]) -> None:
    """An account none of whose devices ran `recv` yet has no KeyPackages: `group add` said
    "added" for it beside others, and alone "those devices are in the group already, or have no
    KeyPackages"; now it names who was left out and why, as `group create` does."""
    with trio.fail_after(HANG_S * 4):
        alice, bob = await register(alpha, "alice"), await register(alpha, "bob")
        carol, _dave, erin = await register(alpha, "carol"), await register(alpha, "dave"), await register(alpha, "erin")
        for device in (alice, bob):  # KeyPackages go up with the first receive; carol's, dave's and erin's not yet
            await device.receive()
        [created] = await cli_json(capsys, alice, "group", "create", "walkers", BOB)
        group_id, dave_at, erin_at = created["id"], f"dave@{alpha.config.name}", f"erin@{alpha.config.name}"

        no_keys = f"{CAROL}: no group keys yet, published by their next `sonet recv`; add them then"
        rc, out, err = await cli_run(capsys, "--home", alice.state.home, "group", "add", "walkers", CAROL)
        assert (rc, out, err) == (1, "", f"sonet: error: nothing to add ({no_keys})\n")
        rc, out, err = await cli_run(capsys, "--home", alice.state.home, "group", "add", "walkers", BOB, CAROL)
        assert (rc, out) == (1, "") and err == f"sonet: error: nothing to add ({no_keys}; {BOB}: in the group already, with every device)\n"
        error = json_error_of(await cli_run(capsys, "--home", alice.state.home, "group", "add", "walkers", CAROL, "--json"))
        assert error == {"code": "nothing_to_do", "message": f"nothing to add ({no_keys})"}

        await carol.receive()
        rc, out, err = await cli_run(capsys, "--home", alice.state.home, "group", "add", "walkers", CAROL, dave_at)
        assert rc == 0 and out.startswith(f'"walkers" ({group_id}): added {CAROL} ({dave_at}: no group keys yet, published by their next '), out
        await erin.receive()
        [added] = await cli_json(capsys, alice, "group", "add", "walkers", erin_at, dave_at)
        assert (added["members"], added["not_added"]) == (sorted([ALICE, BOB, CAROL, erin_at]), [dave_at])
