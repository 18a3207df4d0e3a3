"""How often a device's delivery task reads its mailbox (node/client_session.py): after a read
that held everything past the last one delivered (``Page.complete``) it delivers and does not
read again until woken; a read stopped at its cap is followed by another, and an envelope
stored while a Deliver is on its way is delivered too. Each read is a hand-off to the store's
read thread on the latency path of every delivery."""

from __future__ import annotations

import pytest
import trio

from sonet.core.client_api import Ack, Deliver, Drained, SendBatch
from sonet.node import client_session

from .conftest import HANG_S, RawConnection, RunningNode
from .kit import opaque_envelope


class CountedReads:
    """The sizes of the reads of ``account``'s mailboxes."""

    def __init__(self, running: RunningNode, monkeypatch: pytest.MonkeyPatch, account: str) -> None:
        self.account = account
        self.store = running.node.context.store
        self.sizes: list[int] = []
        self.after_read: list = []  # callables run once, after the next read with items
        self._read = self.store.pending
        monkeypatch.setattr(self.store, "pending", self.pending)

    async def pending(self, *args, **kwargs):
        page = await self._read(*args, **kwargs)
        if args[0] != self.account:
            return page
        self.sizes.append(len(page))
        if page and self.after_read:
            await self.after_read.pop(0)()
        return page


async def delivered_until_drained(conn: RawConnection, count: int) -> list[bytes]:
    """The ids of the next ``count`` envelopes delivered, acknowledged as they come."""
    ids: list[bytes] = []
    async for frame in conn.deliveries:
        if isinstance(frame, Deliver):
            got = tuple(d.envelope.id for d in frame.items)
            ids += got
            await conn.send(Ack(ids=got))
            if len(ids) >= count:
                return ids
        else:
            assert isinstance(frame, Drained)
    raise AssertionError(f"connection ended: {conn.error!r}")


async def test_a_read_that_held_everything_is_the_only_read_of_its_delivery(
    running: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        reads = CountedReads(running, monkeypatch, bob.address)
        async with running.raw(alice.first) as sender, running.raw(bob.first) as conn:
            async for frame in conn.deliveries:  # the empty mailbox: read once, then Drained
                assert isinstance(frame, Drained)
                break
            assert reads.sizes == [0]
            envs = tuple(opaque_envelope(bob.first) for _ in range(3))
            await sender.request(lambda n: SendBatch(request=n, envelopes=envs))
            assert await delivered_until_drained(conn, 3) == [e.id for e in envs]
            await trio.sleep(0.2)  # (a further read would come now, without waiting)
            assert reads.sizes == [0, 3]  # (before: [0, 3, 0])


async def test_a_read_stopped_at_its_cap_is_followed_by_another(running: RunningNode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_session, "DELIVER_BATCH", 2)
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        envs = tuple(opaque_envelope(bob.first) for _ in range(5))
        async with running.raw(alice.first) as sender:
            await sender.request(lambda n: SendBatch(request=n, envelopes=envs))
        reads = CountedReads(running, monkeypatch, bob.address)
        async with running.raw(bob.first) as conn:
            assert await delivered_until_drained(conn, 5) == [e.id for e in envs]
            await trio.sleep(0.2)
        assert reads.sizes == [2, 2, 1]  # the last held everything: no read after it


async def test_an_envelope_stored_while_a_delivery_is_read_is_delivered(
    running: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        first, second = opaque_envelope(bob.first), opaque_envelope(bob.first)
        async with running.raw(alice.first) as sender:
            await sender.request(lambda n: SendBatch(request=n, envelopes=(first,)))
            reads = CountedReads(running, monkeypatch, bob.address)

            async def store_the_second() -> None:  # committed (and its wake-up) after the read
                await sender.request(lambda n: SendBatch(request=n, envelopes=(second,)))

            reads.after_read.append(store_the_second)
            async with running.raw(bob.first) as conn:
                assert await delivered_until_drained(conn, 2) == [first.id, second.id]
