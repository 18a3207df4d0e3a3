"""Attack round 10: a pinned peer pushing group submissions at a group's hub.

bob@beta hosts a group at beta with eve@peer.example as its other member, so peer.example is a
member node; mallory.example is another pinned peer with no member. Before this round the hub
ordered whatever SUBMIT a peer pushed: from a node with no member device (mallory's reached
bob's mailbox), under a made-up origin (mallory naming peer.example), and what ordering a
peer's submissions stored at the hub (its body, its copies queued for the other member nodes,
its ``hub_refs`` record) counted towards nobody's budget: 16 texts of 256 KiB from peer.example
left 4 MiB of bodies and 4 MiB of copies at beta against a 1 MiB relay budget. Now a SUBMIT
whose origin the pusher may not speak for is ``invalid``, one from a node with no member
device is refused ``not_member`` (a VERDICT to that node), and what a peer's submission stores
counts towards that node's relay budget (``relay_full`` past it, nothing of the push taken).
"""

from __future__ import annotations

import os
from typing import Any

from sonet.core.client_api import ErrorFrame
from sonet.core.federation_api import Push, PushResult, Transit
from sonet.core.groups.items import GroupItem, ItemKind
from sonet.core import limits
from sonet.core.mls.messages import Add
from tests.core.groups.devices import Device
from tests.node.conftest import RunningNode, StartNode
from tests.node.group_kit import create_group, group_items, mls_device, submit

from .net import BETA, ask, new_key, peer_link, pin

MIB = 1 << 20
PEER, MALLORY = "peer.example", "mallory.example"
#: each submission's plaintext; 16 of them are four times the relay budget
TEXT = 256 * 1024


async def bobs_group(beta: RunningNode) -> tuple[Any, Device, bytes]:
    """bob@beta's group, hosted at beta, with eve@peer.example added: (bob's account, his
    MLS device, the group id)."""
    bob = await beta.enroll("bob")
    device = mls_device(bob.first)
    eve = Device.new(f"eve@{PEER}")
    async with beta.raw(bob.first) as conn:
        group = await create_group(conn, device)
        staged, message, welcome = device.g.commit(device.rng.randbytes, proposals=[Add(eve.key_package)])
        await submit(conn, group, message, hub=BETA, welcome=welcome)
        device.g.merge(staged)
    return bob, device, group


def pushed_text(device: Device, group: bytes, *, origin: str, size: int = 16) -> Transit:
    """A SUBMIT of an application message of the group's current epoch, as ``origin`` pushes
    it (the hub cannot tell who encrypted it)."""
    message = device.g.encrypt(os.urandom(size), device.rng.randbytes).to_bytes()
    item = GroupItem(
        kind=ItemKind.SUBMIT, ref=os.urandom(16), group=group, epoch=device.g.epoch, seq=0, message=message, welcome=b"",
        members=(), outcome="", hub="",
    )  # fmt: skip
    return Transit(origin=origin, dest=BETA, hops=limits.MAX_HOPS, envelope=None, report=None, group=item)


async def bobs_refs(beta: RunningNode, bob: Any) -> set[bytes]:
    return {item.ref for item in group_items(await beta.pending(bob.address, 1))}


async def held_for(beta: RunningNode, origin: str, scope: str = "origin") -> tuple[int, int]:
    """(rows, bytes) beta counts towards ``origin``'s relay budget (``scope`` "origin"), or its
    records of ``origin``'s group submissions ("origin_refs")."""
    async with beta.store() as store:
        row = await store._read(lambda conn: conn.execute("SELECT count, bytes FROM storage_usage WHERE scope = ? AND key = ?", (scope, origin)).fetchone())
    return (0, 0) if row is None else (row[0], row[1])


async def test_a_node_with_no_member_device_cannot_submit_to_the_group(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    bob, device, group = await bobs_group(beta)
    key = new_key()
    await pin(beta, MALLORY, fingerprint=key.public.fingerprint)
    await pin(beta, PEER, fingerprint=new_key().public.fingerprint)
    before = await bobs_refs(beta, bob)
    own = pushed_text(device, group, origin=MALLORY)
    lying = pushed_text(device, group, origin=PEER)  # a member node's name, not mallory's to give
    async with peer_link(beta, key, MALLORY) as link:
        answer = await ask(link, Push(request=1, items=(own, lying)))
    # its own: taken, and refused by the hub (a VERDICT on its way back); the other: held back
    # (pushed again later; never ordered from mallory)
    assert answer == PushResult(request=1, outcomes=("ok", "hub_pending"))
    assert await bobs_refs(beta, bob) == before, "mallory's submissions reached bob's mailbox"
    async with beta.store() as store:
        outcome = await store._read(lambda conn: conn.execute("SELECT outcome FROM hub_refs WHERE ref = ?", (own.group.ref,)).fetchone())  # type: ignore[union-attr]
    assert outcome is not None and outcome[0] == "not_member"


async def test_a_member_nodes_submissions_are_taken_and_counted_towards_it(start_node: StartNode) -> None:
    beta = await start_node(name=BETA)
    bob, device, group = await bobs_group(beta)
    key = new_key()
    await pin(beta, PEER, fingerprint=key.public.fingerprint)
    before = await bobs_refs(beta, bob)
    items = [pushed_text(device, group, origin=PEER) for _ in range(3)]
    async with peer_link(beta, key, PEER) as link:
        answer = await ask(link, Push(request=1, items=tuple(items)))
    assert answer == PushResult(request=1, outcomes=("ok",) * 3)
    assert await bobs_refs(beta, bob) - before == {t.group.ref for t in items if t.group is not None}
    # per submission: its body (bob's copy), its copy queued for peer.example; its hub_refs row apart
    rows, size = await held_for(beta, PEER)
    assert rows == 3 * 2 and size > 0 and await held_for(beta, PEER, "origin_refs") == (3, 0), (rows, size)
    ids = [i.id for i in await beta.pending(bob.address, 1)]
    async with beta.store() as store:
        await store.ack(bob.address, 1, ids, now=beta.node.clock_ms())
    assert (await held_for(beta, PEER))[0] == 3  # the bodies go with bob's copies


async def test_a_member_nodes_submissions_are_held_to_its_relay_budget(start_node: StartNode) -> None:
    beta = await start_node(name=BETA, storage_relay_origin_max_bytes=MIB)
    bob, device, group = await bobs_group(beta)
    key = new_key()
    await pin(beta, PEER, fingerprint=key.public.fingerprint)
    taken, refusal = 0, ""
    async with peer_link(beta, key, PEER) as link:
        for n in range(16):
            answer = await ask(link, Push(request=n + 1, items=(pushed_text(device, group, origin=PEER, size=TEXT),)))
            if isinstance(answer, ErrorFrame):
                refusal = answer.code
                break
            assert answer == PushResult(request=n + 1, outcomes=("ok",))
            taken += 1
    rows, size = await held_for(beta, PEER)
    assert refusal == "relay_full" and taken <= MIB // TEXT, f"{taken} taken, {size:,} bytes held for {PEER}, refusal {refusal!r}"
