"""Attack round 9: ``Ack`` (up to 4096 ids) and ``FetchStatus`` (up to 1024) were counted as one
request each, whatever they carried, and every id is looked up in the store. One device on its
eight connections kept a real node's core busy (~220 full frames a second; another device's
send 4 -> 44 ms). Their ids now come out of per-device buckets (node/client_limits.py
``ACK_IDS``, ``STATUS_IDS``), far above what a device draining its mailbox acknowledges; an
acknowledged id its connection delivered is not charged (a device receiving fast is never
slowed)."""

from __future__ import annotations

import os

import trio

from sonet.core.client_api import Ack, FetchStatus, Ping, Pong, Statuses
from sonet.node.client_limits import ACK_IDS, STATUS_IDS, ClientLimits

from .conftest import HANG_S
from .kit import NodeError
from .test_client_limits import Clock, Conn, Ctx, refused, start_limited  # noqa: F401 - a fixture


def ids(n: int) -> tuple[bytes, ...]:
    return tuple(os.urandom(16) for _ in range(n))


async def test_acknowledged_ids_are_counted_per_device() -> None:
    clock = Clock()
    limits = ClientLimits()
    mallory, alice = Conn(Ctx(clock), "dev-mallory"), Conn(Ctx(clock), "dev-alice")
    full = ids(4000)
    for _ in range(int(ACK_IDS.burst) // len(full)):
        await limits.check(mallory, Ack(ids=full))
    assert await refused(limits, Conn(mallory.ctx, "dev-mallory"), Ack(ids=full)) == (
        "too many acknowledgements from this device; try again in a moment"
    )
    await limits.check(alice, Ack(ids=full))  # another device has its own
    await limits.check(mallory, Ack(ids=()))  # an empty one costs no id
    clock.ms += 1000
    await limits.check(mallory, Ack(ids=ids(int(ACK_IDS.per_second))))


async def test_acknowledging_what_the_connection_delivered_costs_nothing() -> None:
    # a device receiving faster than the bucket refills (a bot, the relay bench's recipient)
    # is never slowed: only ids its connection did not deliver are charged
    clock = Clock()
    limits = ClientLimits()
    bob = Conn(Ctx(clock), "dev-bob")
    for _ in range(3 * int(ACK_IDS.burst) // 4000):
        delivered = ids(4000)
        bob.in_flight.update(delivered)
        await limits.check(bob, Ack(ids=delivered))
        bob.in_flight.difference_update(delivered)
    # made-up ids beside delivered ones are still counted, each
    made_up = ids(4000)
    for _ in range(int(ACK_IDS.burst) // len(made_up)):
        delivered = ids(96)
        bob.in_flight.update(delivered)
        await limits.check(bob, Ack(ids=made_up + delivered))
    assert await refused(limits, bob, Ack(ids=made_up)) == "too many acknowledgements from this device; try again in a moment"


async def test_status_ids_are_counted_per_device() -> None:
    clock = Clock()
    limits = ClientLimits()
    mallory = Conn(Ctx(clock), "dev-mallory")
    full = ids(1000)
    for _ in range(int(STATUS_IDS.burst) // len(full)):
        await limits.check(mallory, FetchStatus(request=1, ids=full))
    assert await refused(limits, mallory, FetchStatus(request=1, ids=full)) == (
        "too many delivery status requests from this device; try again in a moment"
    )
    clock.ms += 1000
    await limits.check(mallory, FetchStatus(request=1, ids=ids(int(STATUS_IDS.per_second))))


async def test_a_flood_of_acks_of_made_up_ids_ends_the_connection(start_limited) -> None:  # noqa: ANN001
    # The node's own limits, on a clock that stands still: at 5,000 ids a second the bucket
    # refilled a full Ack's worth while a loaded machine reconnected, and the second
    # connection's Ack was rightly taken (the test then waited for a close that never came).
    running, _ = await start_limited(ClientLimits())
    mallory, bob = await running.enroll("mallory"), await running.enroll("bob")
    full = ids(4096)
    with trio.fail_after(HANG_S):
        async with running.raw(mallory.first) as conn:
            for _ in range(int(ACK_IDS.burst) // len(full) + 1):
                await conn.send(Ack(ids=full))
            await conn.closed.wait()
            assert isinstance(conn.error, NodeError) and conn.error.code == "rate_limited"
        async with running.raw(mallory.first) as conn:  # reconnecting refills nothing
            await conn.send(Ack(ids=full))
            await conn.closed.wait()
            assert isinstance(conn.error, NodeError) and conn.error.code == "rate_limited"
        async with running.raw(bob.first) as conn:  # others are not affected
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
            await conn.send(Ack(ids=full))
            assert isinstance(await conn.request(lambda n: FetchStatus(request=n, ids=ids(1024))), Statuses)


async def test_a_device_acknowledging_more_than_its_bucket_of_what_came_stays_connected(start_limited) -> None:  # noqa: ANN001
    # the bucket (4 ids, none more) is far below what bob receives: his acks of what his
    # connection delivered are not charged, so he drains it all and stays connected
    from sonet.core.client_api import Deliver, Drained, SendBatch

    from .kit import access_token, opaque_envelope
    from .test_client_limits import Rate

    with trio.fail_after(HANG_S):
        at, clock = await start_limited(ClientLimits(ack_ids=Rate(per_second=1e-9, burst=4)))
        alice, bob = await at.enroll("alice"), await at.enroll("bob")
        async with at.raw(bob.first) as conn:
            token = (await access_token(conn, bob.address),)  # alice writes as bob's contact
        async with at.raw(alice.first) as conn:
            for _ in range(3):
                batch = tuple(opaque_envelope(bob.first) for _ in range(16))
                await conn.request(lambda n: SendBatch(request=n, envelopes=batch, access=token))
        got = 0
        async with at.raw(bob.first) as conn:
            while got < 48:
                frame = await conn.next_push()
                if isinstance(frame, Deliver):
                    got += len(frame.items)
                    for d in frame.items:  # one Ack each: 48 frames, each charged 1 were it charged
                        await conn.send(Ack(ids=(d.envelope.id,)))
                else:
                    assert isinstance(frame, Drained), frame
            assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
            # what it did not deliver is charged: made-up ids over the bucket end it
            await conn.send(Ack(ids=ids(4)))
            await conn.send(Ack(ids=ids(1)))
            await conn.closed.wait()
            assert isinstance(conn.error, NodeError) and conn.error.code == "rate_limited"
        assert await at.pending(bob.address, now=clock.ms) == []
