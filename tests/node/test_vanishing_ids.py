"""A real node forgets a disappearing message's id at its expiry (node/store/vanishing.py): the
dedup record of an envelope its device received and acknowledged goes at the envelope's time,
woken by the expiry loop (node/expiry.py), and a replay after it is refused as expired."""

from __future__ import annotations

import sqlite3

import pytest
import trio

from sonet.core.client_api import Ack, Accepted, Ping, SendBatch
from sonet.node.app import DB_FILE
from sonet.node.expiry import CHECK_S

from .conftest import HANG_S, RunningNode, collect_until_drained
from .kit import NodeError, opaque_envelope, wall_ms


def _tables_naming(node: RunningNode, needle: bytes) -> set[str]:
    db = sqlite3.connect(node.data_dir / DB_FILE)
    try:
        found = set()
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            if any(any(isinstance(v, bytes) and needle in v for v in row) for row in db.execute(f"SELECT * FROM {table}")):  # noqa: S608
                found.add(table)
        return found
    finally:
        db.close()


async def test_an_acknowledged_timed_envelopes_id_goes_at_its_expiry_and_a_replay_is_refused(running: RunningNode) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        expires = wall_ms() + 2_000
        timed, ordinary = opaque_envelope(bob.first, expires=expires), opaque_envelope(bob.first)
        async with running.raw(alice.first) as conn:
            reply = await conn.request(lambda n: SendBatch(request=n, envelopes=(timed, ordinary), access=()))
            assert isinstance(reply, Accepted) and reply.stored == 2
        async with running.raw(bob.first) as conn:
            assert {i.envelope.id for i in await collect_until_drained(conn)} == {timed.id, ordinary.id}
            await conn.send(Ack(ids=(timed.id, ordinary.id)))
            await conn.request(lambda n: Ping(request=n))  # requests are handled in order: the ack is done
        assert _tables_naming(running, timed.id) == {"acked_ids"}  # a retransmission now is not stored again
        await trio.sleep(max(0.0, (expires - wall_ms()) / 1000) + CHECK_S + 0.3)
        assert _tables_naming(running, timed.id) == set()
        assert _tables_naming(running, ordinary.id) == {"acked_ids"}
        async with running.raw(alice.first) as conn:
            with pytest.raises(NodeError) as err:
                await conn.request(lambda n: SendBatch(request=n, envelopes=(timed,), access=()))
            assert err.value.code == "expired"
