"""Claims of docs/security.md about what one node does that no test held as stated:

- Limits, "Bytes in one Deliver frame (what one stalled device connection holds in memory) |
  1 MiB of envelope bodies, 128 envelopes | the rest goes in later frames": the other tests
  checked that a large mailbox arrives whole, not the size of each frame.
- "Message requests and access tokens": "The node keeps no table: any device of the account gets
  the same token with its sender certificate."
- Limits, "Expensive requests of one device": a KeyPackage upload counts three signature checks
  (16 KiB each) per KeyPackage, before checking.
- Attachments: "nobody can write to another account's blob", an upload under way included.
- "What the node learns": "An envelope a device of this node submitted keeps the name of that
  device in its mailbox row until it is acknowledged, expires or its mailbox goes" (and not
  after: the row goes, and the dedup record names no sender).
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import trio

from sonet.core import limits
from sonet.core.client_api import Ack, Deliver, Drained, Ping
from sonet.node.app import DB_FILE
from sonet.node.client_session import DELIVER_BATCH, DELIVER_BYTES

from .conftest import HANG_S, RunningNode
from .kit import access_token, opaque_envelope
from .test_client_api import _send
from .test_cost_budget import clock  # noqa: F401 - fixture


async def _frames_until_drained(conn) -> list[Deliver]:  # noqa: ANN001
    frames: list[Deliver] = []
    async for frame in conn.deliveries:
        if isinstance(frame, Drained):
            return frames
        assert isinstance(frame, Deliver)
        frames.append(frame)
    raise AssertionError(f"connection ended before Drained: {conn.error!r}")


async def test_a_deliver_frame_holds_at_most_128_envelopes_and_1_mib_of_bodies(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        small = [opaque_envelope(bob.first, body=bytes([n % 251]) * 100) for n in range(300)]
        large = [replace(opaque_envelope(bob.first), body=bytes([n]) * limits.MAX_ENVELOPE_BODY) for n in range(9)]
        async with running.raw(bob.first) as conn:
            token = (await access_token(conn, bob.address),)  # alice writes as bob's contact
        async with running.raw(alice.first) as conn:
            for start in range(0, len(small), 100):
                assert (await _send(conn, *small[start : start + 100], access=token)).stored == 100
            for start in range(0, len(large), 3):
                assert (await _send(conn, *large[start : start + 3], access=token)).stored == 3
        async with running.raw(bob.first) as conn:
            frames = await _frames_until_drained(conn)
            sizes = [(len(f.items), sum(len(i.envelope.body) for i in f.items)) for f in frames]
            # every envelope, in order, in frames within both bounds
            assert [i.envelope.id for f in frames for i in f.items] == [e.id for e in small + large]
            assert all(count <= DELIVER_BATCH == 128 and size <= DELIVER_BYTES == 1 << 20 for count, size in sizes), sizes
            # and the bounds are the ones that cut: full frames of 128 small ones, 4 large ones per frame
            assert sizes[:2] == [(128, 128 * 100), (128, 128 * 100)], sizes
            assert (4, 4 * limits.MAX_ENVELOPE_BODY) in sizes, sizes
            await conn.send(Ack(ids=tuple(e.id for e in small + large)))
            await conn.request(lambda n: Ping(request=n))


def _sender_columns(running: RunningNode, envelope_id: bytes) -> list[tuple[str | None, int | None]]:
    db = sqlite3.connect(f"file:{running.data_dir / DB_FILE}?mode=ro", uri=True)
    try:
        return db.execute("SELECT sender_account, sender_device FROM mailbox WHERE id = ?", (envelope_id,)).fetchall()
    finally:
        db.close()


async def test_a_mailbox_row_names_the_local_sending_device_until_the_envelope_is_acknowledged(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        env = opaque_envelope(bob.first)
        async with running.raw(bob.first) as conn:
            token = (await access_token(conn, bob.address),)
        async with running.raw(alice.first) as conn:
            await _send(conn, env, access=token)
        assert _sender_columns(running, env.id) == [(alice.address, alice.first.device_id)]
        async with running.raw(bob.first) as conn:
            [delivery] = [i for f in await _frames_until_drained(conn) for i in f.items]
            assert delivery.envelope.id == env.id
            await conn.send(Ack(ids=(env.id,)))
            await conn.request(lambda n: Ping(request=n))
        assert _sender_columns(running, env.id) == []
        db = sqlite3.connect(f"file:{running.data_dir / DB_FILE}?mode=ro", uri=True)
        try:
            columns = [row[1] for row in db.execute("PRAGMA table_info(acked_ids)")]
            assert not [c for c in columns if c.startswith("sender")], columns
            assert db.execute("SELECT count(*) FROM acked_ids WHERE id = ?", (env.id,)).fetchone() == (1,)
        finally:
            db.close()


async def test_every_device_of_an_account_gets_the_same_token_and_the_node_keeps_no_table_of_them(running: RunningNode) -> None:
    # "Message requests and access tokens": "The node keeps no table: any device of the account
    # gets the same token with its sender certificate."
    with trio.fail_after(HANG_S):
        bob = await running.enroll("bob")
        second = await running.link(bob)
        alice = await running.enroll("alice")
        tokens = []
        for device in (bob.first, second):
            async with running.raw(device) as conn:
                tokens.append((await access_token(conn, bob.address)).token)
        async with running.raw(alice.first) as conn:
            alices = (await access_token(conn, alice.address)).token
        assert tokens[0] == tokens[1] != alices
        await running.settle()
        on_disk = b"".join(running.file_contents().values())
        for token in (tokens[0], alices):
            assert token not in on_disk and token[4:] not in on_disk


async def test_nobody_writes_to_another_accounts_blob_while_it_is_uploaded(running: RunningNode) -> None:
    # Attachments: "nobody can write to another account's blob" (test_blobs.py tries a complete
    # blob; the one that matters is an upload under way, whose next offset anyone can guess)
    from sonet.core.blob_api import BLOB_CHUNK_BYTES, BlobPut, BlobStatus, BlobStored

    from .test_blobs import DATA, create, download, put, refused, upload_from

    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        async with running.raw(alice.first) as conn:
            blob = await create(conn)
            await put(conn, blob, 0, DATA[:BLOB_CHUNK_BYTES])
        async with running.raw(bob.first) as conn:
            for offset in (BLOB_CHUNK_BYTES, 0):
                await refused(conn, lambda n, o=offset: BlobPut(request=n, blob=blob, offset=o, data=b"\x00" * 10), "blob_unknown")
            await refused(conn, lambda n: BlobStatus(request=n, blob=blob), "blob_unknown")
        async with running.raw(alice.first) as conn:
            status = await conn.request(lambda n: BlobStatus(request=n, blob=blob))
            assert isinstance(status, BlobStored) and status.stored == BLOB_CHUNK_BYTES
            assert (await upload_from(conn, blob, status.stored)).complete
        async with running.raw(bob.first) as conn:
            assert await download(conn, blob) == DATA


async def test_a_key_package_upload_is_charged_three_signature_checks_each_before_any_is_made(
    start_node, clock, monkeypatch  # noqa: ANN001
) -> None:
    # Limits, "Expensive requests of one device": "a prekey or KeyPackage upload counts 16 KiB per
    # signature it makes the node check, three per KeyPackage, before checking" (test_cost_budget.py
    # shows it for prekeys only)
    import pytest

    from sonet.core.cost_budget import VERIFY_COST, Budget
    from sonet.core.ratelimit import Rate
    from sonet.node import client_key_packages

    from .kit import NodeError
    from .test_cost_budget import _node
    from .test_key_packages import key_package, publish

    assert VERIFY_COST == 16 * 1024
    with trio.fail_after(HANG_S):
        budget = Budget(requests=Rate(per_second=100, burst=1000), bytes=Rate(per_second=VERIFY_COST, burst=3 * VERIFY_COST + 1000))
        running = await _node(start_node, budget)
        alice = await running.enroll("alice")
        async with running.raw(alice.first) as conn:
            assert await publish(conn, [key_package(alice.first)]) == 1  # three checks' worth, of 3 + a little
            checked: list[object] = []
            real = client_key_packages.check_key_packages
            monkeypatch.setattr(client_key_packages, "check_key_packages", lambda *a: checked.append(a) or real(*a))
            for wait_ms in (0, 2000):  # what is left, then two checks' worth more: not yet three
                clock.now += wait_ms
                with pytest.raises(NodeError) as refused:
                    await publish(conn, [key_package(alice.first)])
                assert refused.value.code == "rate_limited"
            assert checked == []  # refused before any signature was checked
            clock.now += 1000  # the third check's worth
            assert await publish(conn, [key_package(alice.first)]) == 2
            assert len(checked) == 1
