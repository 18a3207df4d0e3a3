"""The one ``--json`` convention (sonet/cli_output.py) across every command that names a
conversation: a 1:1 one is ``to`` (the address, as ``send`` prints it), a group is ``group``:
``{"id", "name"}`` (as ``send``, ``typing`` and ``recv`` print it). Found by newbie10 (round 10):
``react``, ``reply``, ``poll``, ``location`` and the other gesture commands printed ``group`` as
the id alone, ``timer`` printed ``to`` for a group too."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from sonet.client import cli
from sonet.client.sdk import Device

from .conftest import ALICE, BOB, CAROL, HANG_S, Clock, RunningNode, run_cli

Register = Callable[..., Awaitable[Device]]
pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)


def _commands(target: str, msg: str, poll: str, photo: Path) -> list[list[str]]:
    """Every command that sends to ``target`` (an address or a group's name), or to the
    conversation of ``msg`` / ``poll``; each prints one object naming where it went."""
    return [
        ["send", target, "hello"],
        ["send", target, "--file", str(photo), "a caption"],
        ["reply", msg, "agreed"],
        ["react", msg, "👍"],
        ["react", msg, "👍", "--remove"],
        ["edit", msg, "hello again"],
        ["poll", target, "Lunch?", "pizza", "sushi"],
        ["vote", poll, "1"],
        ["poll-close", poll],
        ["location", target, "52.5163", "13.3777", "--label", "Tor"],
        ["contact", target, CAROL, "--name", "Carol"],
        ["event", target, "Standup", "--at", "2027-01-04T09:00Z"],
        ["timer", target, "1h"],
        ["timer", target, "off"],
        ["delete", msg, "--everyone"],
    ]


async def test_every_command_names_a_group_as_group_id_and_name_and_a_contact_as_to(
    alpha: RunningNode, register: Register, clock: Clock, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with trio.fail_after(HANG_S * 6):
        alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
        for device in (alice, bob, carol):
            await device.receive()
        view = await alice.group_create("hikers", [BOB])
        await bob.receive()
        await bob.send_text(ALICE, "hi")  # contacts: alice's device may write to bob's as much as it likes
        await alice.receive()
        photo = tmp_path / "photo.bin"
        photo.write_bytes(b"\x00" * 1000)
        group = {"id": view.id, "name": "hikers"}
        for target, where in (("hikers", {"group": group}), (BOB, {"to": BOB})):
            own = await alice.group_send(view.id, "first") if target == "hikers" else await alice.send_text(BOB, "first")
            poll = await alice.send_poll(target, "Where?", ["lake", "peak"])
            for argv in _commands(target, own.id.hex(), poll.id.hex(), photo):
                clock.advance(10)
                rc, objects = await run_cli(capsys, alice, *argv)
                assert rc == 0 and len(objects) == 1, (argv, objects)
                [obj] = objects
                # exactly one of the two keys, in its one shape
                assert {k: obj[k] for k in ("to", "group") if k in obj} == where, (argv, obj)
                assert "status" not in obj, (argv, obj)  # what became of it is "state", as in `sent` (ux11: send said both)
            rc, objects = await run_cli(capsys, alice, "typing", target)
            assert rc == 0 and {k: objects[0][k] for k in ("to", "group") if k in objects[0]} == where
            rc, objects = await run_cli(capsys, alice, "history", target)
            assert rc == 0 and objects and all(o.get("group") == group if target == "hikers" else "to" in o for o in objects)
        rc, [placed] = await run_cli(capsys, alice, "call", BOB)  # a call is 1:1 only: its callee is to, as a text's recipient
        assert rc == 0 and (placed["from"], placed["to"], placed["direction"]) == (ALICE, BOB, "outgoing") and "peer" not in placed
        await bob.receive()
        rc, [presence] = await run_cli(capsys, alice, "presence", "on", "--to", BOB)  # contacts, not a conversation: no "to"
        assert rc == 0 and "to" not in presence and presence["contacts"] == [BOB], presence
        rc, sent = await run_cli(capsys, alice, "sent", "--limit", "100")
        assert rc == 0 and sent and all(("group" in o and o["group"] == group) != ("to" in o and o["to"] == BOB) for o in sent), sent
        rc, got = await run_cli(capsys, bob, "recv")
        assert rc == 0 and [o["group"] for o in got if "group" in o and o.get("type") != "typing"] and all(
            o["group"] == group for o in got if "group" in o
        )
        assert all(o["from"] == ALICE for o in got if o.get("type") != "group_event")


async def test_user_mistakes_have_their_own_codes_not_local_error(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Found by newbie10 (round 10): `lookup bob`, `devices remove 99` and `link approve 123`
    failed as ``local_error``, which core/errors.py calls a bug. Each is one line (one JSON error
    line with --json), exit 1, with the code of what the user got wrong."""
    from sonet.core.provisioning import make_link_code

    with trio.fail_after(HANG_S * 2):
        alice = await register(alpha, "alice")
        await alice.group_create("solo", [])
        unknown_slot = make_link_code(b"\x01" * 16, b"\x02" * 32)  # well-formed: the node knows no such slot
        for argv, code, says in [
            (["lookup", "bob"], "bad_address", "invalid address 'bob'"),
            (["safety-number", "bob@"], "bad_address", "invalid node name ''"),
            (["trust-node", "no spaces"], "bad_address", "invalid node name 'no spaces'"),  # was bad_input, a peer's fault
            (["devices", "remove", "99"], "unknown_device", f"{ALICE} has no device 99"),
            (["link", "approve", "123"], "link_unknown", "malformed link code"),
            (["link", "approve", "abc.def"], "link_unknown", "link code: the slot is not valid"),
            (["link", "approve", unknown_slot], "link_unknown", ""),
            (["send", BOB, ""], "bad_input", "refusing to send an empty message"),
            (["send", "solo", ""], "bad_input", "refusing to send an empty message"),
            (["group", "remove", "solo", ALICE], "bad_input", "use `group leave`"),
            (["register", "x@alpha.example", "--node", alpha.url, "--invite", "bogus"], "invite_invalid", "malformed invite token"),
        ]:
            rc, objects = await run_cli(capsys, alice, *argv)
            assert rc == 1 and [o["error"]["code"] for o in objects] == [code] and says in objects[0]["error"]["message"], (argv, objects)
            rc = await trio.to_thread.run_sync(cli.main, ["--home", str(alice.state.home), *argv])
            out, err = capsys.readouterr()
            # one line (a node's refusal adds its code: client/cli.py _run)
            assert (rc, out, err.count("\n")) == (1, "", 1) and err.startswith(f"sonet: error: {objects[0]['error']['message']}"), (argv, err)
