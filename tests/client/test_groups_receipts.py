"""Receipts, delivery status and typing in groups (client/groups/sent.py, client/groups/typing.py,
docs/groups.md "Receipts and typing") on real devices against an in-process node: every member
device that stores a group text sends the sender's account a receipt, the sending device counts
them per member device (and only from member devices, only for texts it sent), ``sonet sent``
shows the counts; a typing notice reaches a connected member device and no node stores it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from sonet.client.sdk import Device, SentMessage
from sonet.core.address import parse_address
from sonet.core.content import Content, encode_content
from sonet.core.envelope import Kind
from sonet.node.store.outbox_log import queued_rows

from .conftest import ALICE, BOB, CAROL, HANG_S, RunningNode, link_device, node_db, shown
from .loopback import Loopback
from .test_cli_groups import cli_json, cli_run
from .test_groups_sdk import BOB_B

pytestmark = pytest.mark.usefixtures("few_prekeys")  # prekeys are not counted here (conftest.py)

Register = Callable[..., Awaitable[Device]]


async def group_sent(device: Device) -> list[SentMessage]:
    return [m for m in await device.sent() if m.group is not None]


async def send_content(sender: Device, to: str, content: Content) -> None:
    """What a (modified) client could send: ``content`` 1:1 to every device of ``to``."""
    profile = sender.state.profile()
    async with sender._connect(profile) as conn:
        await sender._deliver(conn, profile, parse_address(to), encode_content(content), None, content.id, Kind.SEALED)


async def _until_connected(at: RunningNode, count: int) -> None:
    while at.node.registry.connected() < count:
        await trio.sleep(0.01)


async def test_receipts_are_counted_per_member_device_and_sent_shows_them(
    alpha: RunningNode, register: Register, make_device: Callable[..., Device], capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S * 4):
        alice, bob, carol = [await register(alpha, name) for name in ("alice", "bob", "carol")]
        bob2 = make_device("bob2")
        await link_device(bob2, bob, alpha.url)
        for device in (alice, bob, bob2, carol):
            await device.receive()
        view = await alice.group_create("hikers", [BOB, CAROL])
        for device in (bob, bob2, carol):
            await device.receive()

        result = await alice.group_send("hikers", "who brings the map?")
        assert result.state == "ordered"
        [m] = await group_sent(alice)
        assert (m.id, m.group.hex() if m.group else None, m.group_name, m.to) == (result.id, view.id, "hikers", "")
        assert (m.state, m.devices, m.delivered, m.read) == ("ordered", 3, 0, 0)  # bob's two devices and carol's

        await bob.receive()  # delivered
        await bob2.receive(read_receipts=True)  # delivered and read
        [m] = await group_sent(alice)
        assert (m.state, m.delivered, m.read, m.delivered_at, m.read_at) == ("ordered", 2, 1, None, None)
        await bob2.receive(read_receipts=True)  # nothing new: no receipt counted twice
        assert [(m.delivered, m.read) for m in await group_sent(alice)] == [(2, 1)]

        await carol.receive(read_receipts=True)
        [m] = await group_sent(alice)
        assert (m.state, m.delivered, m.read) == ("delivered", 3, 2) and m.delivered_at is not None and m.read_at is None

        # the receipts' senders do not count their own group texts' receipts for others, and
        # bob's device counts only its own text: 2 other devices (alice's, carol's) for bob
        bob_sent = await bob.group_send(view.id, "I do")
        await alice.receive(read_receipts=True)
        [b] = await group_sent(bob)
        assert (b.id, b.devices, b.delivered, b.read) == (bob_sent.id, 2, 1, 1)  # bob2 is his own account's
        assert [(m.delivered, m.read) for m in await group_sent(carol)] == []

        # `sonet sent --json`: the group instead of `to`, and the counts
        lines = await cli_json(capsys, alice, "sent")
        [line] = [obj for obj in lines if "group" in obj]
        assert line == {
            "id": result.id.hex(), "group": {"id": view.id, "name": "hikers"}, "sent_at": line["sent_at"], "state": "delivered",
            "code": "", "message": "", "devices": 3, "delivered": 3, "read": 2, "delivered_at": line["delivered_at"], "read_at": None,
            "refreshed": True,
        }  # fmt: skip
        assert line["sent_at"].endswith("Z") and line["delivered_at"].endswith("Z")


async def test_a_receipt_counts_only_from_a_member_device_for_a_text_this_device_sent(alpha: RunningNode, register: Register) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob, dave = [await register(alpha, name) for name in ("alice", "bob", "dave")]
        for device in (alice, bob, dave):
            await device.receive()
        view = await alice.group_create("pair", [BOB])
        await bob.receive()
        sent = await alice.group_send(view.id, "just us")

        # dave is no member: his receipt naming the text (learned somehow) changes nothing
        await send_content(dave, ALICE, Content.make_receipt(id=bytes(16), sent_at=1, receipt="read", ids=[sent.id]))
        # bob's receipt naming an id alice never sent is ignored, and so is it on bob's side
        await send_content(bob, ALICE, Content.make_receipt(id=bytes([1]) * 16, sent_at=1, receipt="delivered", ids=[bytes([7]) * 16]))
        result = await alice.receive()
        assert result.rejected == []
        assert [(m.devices, m.delivered, m.read, m.state) for m in await group_sent(alice)] == [(1, 0, 0, "ordered")]
        assert alice.state._db.execute("SELECT count(*) FROM group_sent_devices").fetchone() == (1,)

        await bob.receive()  # the real receipt
        assert [(m.delivered, m.read, m.state) for m in await group_sent(alice)] == [(1, 0, "delivered")]


async def test_typing_reaches_a_connected_member_device_and_is_never_stored(
    alpha: RunningNode, register: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(HANG_S * 2):
        alice, bob, carol, dave = [await register(alpha, name) for name in ("alice", "bob", "carol", "dave")]
        for device in (alice, bob, carol, dave):
            await device.receive()
        view = await alice.group_create("hikers", [BOB, CAROL])
        for device in (bob, carol):
            await device.receive()
        db = node_db(alpha)
        stored_before = db.execute("SELECT count(*), coalesce(max(seq), 0) FROM mailbox").fetchone()
        outbox_before = len(queued_rows(db))

        results = []

        async def wait_for_it() -> None:
            results.append(await bob.receive(wait=5))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_it)
            await _until_connected(alpha, 1)
            typing = await alice.group_typing("hikers")
            assert (typing.group, typing.name, typing.typing, typing.devices, typing.elsewhere) == (view.id, "hikers", "started", 2, 0)
        [result] = results
        assert result.rejected == []
        assert shown(bob, result) == [(ALICE, "typing", {"typing": "started", "group": {"id": view.id, "name": "hikers"}})]

        # pushed, never stored: no mailbox row (carol was not connected: it is gone), no outbox item
        assert db.execute("SELECT count(*) FROM mailbox WHERE kind = ?", (int(Kind.EPHEMERAL),)).fetchone() == (0,)
        assert db.execute("SELECT count(*), coalesce(max(seq), 0) FROM mailbox").fetchone() == stored_before
        assert len(queued_rows(db)) == outbox_before
        result = await carol.receive()
        assert result.messages == [] and result.rejected == []

        # a device that is not a member cannot type into the group: bob's device refuses it
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_it)
            await _until_connected(alpha, 1)
            fake = Content.make_group_typing(id=bytes([3]) * 16, sent_at=1, typing="started", group=bytes.fromhex(view.id))
            profile = dave.state.profile()
            async with dave._connect(profile) as conn:
                await dave._deliver(conn, profile, parse_address(BOB), encode_content(fake), None, fake.id, Kind.EPHEMERAL)
        result = results[-1]
        assert result.messages == [] and len(result.rejected) == 1 and "not in it" in result.rejected[0], result.rejected

        # the command line: by name, with --json
        assert await cli_json(capsys, alice, "typing", "hikers", "--stop") == [
            {"group": {"id": view.id, "name": "hikers"}, "typing": "stopped", "devices": 2, "elsewhere": 0}
        ]
        rc, out, err = await cli_run(capsys, "--home", alice.state.home, "typing", "no such group")
        assert (rc, out) == (1, "") and err.startswith("sonet: error: no group 'no such group' on this device") and len(err.splitlines()) == 1

        # a member that has left the group no longer gets told
        await carol.group_leave("hikers")
        await alice.receive()
        await alice.receive()  # her commit of carol's leaving came back ordered
        stopped = await alice.group_typing(view.id, started=False)
        assert (stopped.typing, stopped.devices, stopped.elsewhere) == ("stopped", 1, 0)


async def test_typing_reaches_members_on_other_nodes_and_no_node_stores_it(
    alpha_beta: tuple[RunningNode, RunningNode], loopback: Loopback, register: Register
) -> None:
    alpha, beta = alpha_beta
    alice, bob = await register(alpha, "alice"), await register(beta, "bob")
    await alice.receive()
    await bob.receive()
    view = await alice.group_create("far apart", [BOB_B])
    await loopback.flush()
    await bob.receive()
    db = node_db(alpha)
    outbox_before = len(queued_rows(db))
    results = []

    async def wait_for_it() -> None:
        results.append(await bob.receive(wait=5))

    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_it)
            await _until_connected(beta, 1)
            typing = await alice.group_typing(view.id)
            assert (typing.devices, typing.elsewhere) == (1, 0)  # bob is on beta
    [result] = results
    assert shown(bob, result) == [(ALICE, "typing", {"typing": "started", "group": {"id": view.id, "name": "far apart"}})]
    assert len(queued_rows(db)) == outbox_before
    assert node_db(beta).execute("SELECT count(*) FROM mailbox WHERE kind = ?", (int(Kind.EPHEMERAL),)).fetchone() == (0,)
