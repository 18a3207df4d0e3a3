"""client/connection.py against a real node: once the node has ended the connection (here with
a connection-level error after an Ack it could not record), a request fails at once instead
of waiting for an answer nobody is left to read (`sonet recv` hung on this during a full
disk, found by the fault harness)."""

from __future__ import annotations

import pytest
import trio

from sonet.client.connection import ConnectError, NodeError, connect
from sonet.core.client_api import Ack, Ping, SendBatch
from sonet.node.store import StoreError

from .conftest import HANG_S, RunningNode
from .kit import opaque_envelope


async def test_a_request_after_the_node_ended_the_connection_fails_at_once(running: RunningNode, monkeypatch) -> None:
    with trio.fail_after(HANG_S):
        alice, bob = await running.enroll("alice"), await running.enroll("bob")
        env = opaque_envelope(bob.first)
        async with running.raw(alice.first) as raw:
            await raw.request(lambda n: SendBatch(request=n, envelopes=(env,)))

        async def full_disk(*args, **kwargs):
            raise StoreError("database error: database or disk is full")

        monkeypatch.setattr(running.node.federation._store, "ack", full_disk)
        async with connect(running.url, identity=bob.first.identity, node_fingerprint=running.fingerprint) as conn:
            async for frame in conn.deliveries:
                await conn.send(Ack(ids=tuple(i.envelope.id for i in frame.items)))
                break
            with trio.fail_after(5):  # a hang guard: the answer is an error, at once
                while conn.error is None:
                    await trio.sleep(0.01)
                with pytest.raises((NodeError, ConnectError)) as err:
                    await conn.request(lambda n: Ping(request=n))
            assert "unavailable" in str(err.value) or getattr(err.value, "code", "") == "unavailable"
