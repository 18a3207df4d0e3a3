"""Connections this node dials have a send deadline of their own (transport/send_deadline.py,
the server's ``send_timeout_s``): a peer that accepts the connection, completes the handshake
and then reads nothing has the connection reset once a send makes no progress for the deadline,
the send fails saying so instead of blocking for ever, the link pool logs why the link ended
and dials a fresh link for the next request, as after any other failure."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
from sonet.transport.ws_errors import ConnectionClosed

from sonet.core.crypto import CryptoMode, CryptoPolicy, SigningKey, VerifyKey
from sonet.core.errors import LocalProtocolError
from sonet.core.federation_api import Push, Transit
from sonet.federation.errors import FederationError
from sonet.federation.link import ENDPOINT, dial_peer
from sonet.federation.peers import Peer
from sonet.federation.pool import LinkPool
from sonet.federation.settings import FederationSettings
from sonet.node.app import now_ms
from sonet.transport import respond, serve
from sonet.transport.server import Connection, ConnectionLimits
from sonet.transport.websocket import UpgradeRequest
from tests.node.kit import opaque_envelope

HANG_S = 30  # hang guard, never a performance threshold
SEND_TIMEOUT_S = 0.3  # the test's small setting
ALPHA, BETA = "alpha.example", "beta.example"


def new_key() -> SigningKey:
    return SigningKey.generate(CryptoMode.HYBRID, os.urandom)


@dataclass
class DeafPeer:
    """A peer that completes the handshake on /federation, then never reads a byte."""

    url: str
    key: SigningKey
    #: connections it completed the handshake on
    links: int = 0
    #: how each of them ended, as its server saw it
    ended: list[str] = field(default_factory=list)


@asynccontextmanager
async def deaf_peer() -> AsyncIterator[DeafPeer]:
    key = new_key()
    deaf = DeafPeer(url="", key=key)

    async def handler(request: UpgradeRequest, conn: Connection) -> None:
        ws = await request.accept()
        done = await respond(ws, identity=key, policy=CryptoPolicy(), prologue=ENDPOINT.encode())
        if done is None:
            return
        conn.authenticated()
        deaf.links += 1
        await trio.sleep_forever()  # reads nothing: what it was sent stays in the kernel's buffers

    caps = ConnectionLimits(handshake_timeout_s=3600, send_timeout_s=3600)
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(lambda task_status: serve(handler, "127.0.0.1", 0, plain_http_answer="deaf\n", caps=caps, task_status=task_status))
        deaf.url = f"ws://127.0.0.1:{listening.port}"
        yield deaf
        nursery.cancel_scope.cancel()


def big_push() -> Push:
    """A push of ~2 MB: a few of them fill the kernel's buffers of a connection nobody reads."""
    items = tuple(
        Transit(origin=ALPHA, dest=BETA, hops=1, envelope=opaque_envelope((f"bob@{BETA}", 1), body=os.urandom(200_000)), report=None)
        for _ in range(10)
    )
    return Push(request=0, items=items)


async def test_a_dialled_peer_that_stops_reading_has_the_connection_reset_at_the_send_deadline() -> None:
    ours = new_key()
    with trio.fail_after(HANG_S):
        async with deaf_peer() as deaf:
            async with dial_peer(deaf.url, identity=ours, fingerprint=deaf.key.public.fingerprint, name=ALPHA, send_timeout_s=SEND_TIMEOUT_S) as link:
                push = big_push()
                with pytest.raises(ConnectionClosed) as stalled:
                    while True:  # until the buffers are full and a send stalls
                        await link.send(push)
                reason = stalled.value.reason
                assert reason is not None and reason.reason == f"send timeout: the other side read nothing for {SEND_TIMEOUT_S:g} s"
                assert link.closed
                with pytest.raises(LocalProtocolError, match="cannot send any more"):  # nothing more goes out on it
                    await link.send(push)


async def test_the_link_pool_logs_why_a_stalled_link_ended_and_dials_a_new_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sonet.federation")
    settings = FederationSettings(send_timeout_s=SEND_TIMEOUT_S, request_deadline_s=3600, retry_base_s=0.01, retry_max_s=0.01)

    async def remember_key(peer: Peer, key: VerifyKey) -> None:
        pass

    pool = LinkPool(name=ALPHA, identity=new_key(), policy=CryptoPolicy(), remember_key=remember_key, clock_ms=now_ms, rng=os.urandom, settings=settings)
    with trio.fail_after(HANG_S):
        async with deaf_peer() as deaf, trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            peer = Peer(name=BETA, url=deaf.url, fingerprint=deaf.key.public.fingerprint, via=None, added_at=now_ms())
            failures: list[FederationError] = []

            async def push() -> None:
                try:
                    await pool.request(peer, big_push())
                except FederationError as exc:
                    failures.append(exc)

            async with trio.open_nursery() as pushes:  # more than the buffers hold, at once
                for _ in range(8):
                    pushes.start_soon(push)
            assert len(failures) == 8 and deaf.links == 1
            assert any("send timeout" in str(exc) for exc in failures), failures
            assert any("link to beta.example ended" in r.getMessage() and "send timeout" in r.getMessage() for r in caplog.records)
            # the next request dials afresh, as after any other failure of a link
            nursery.start_soon(push)
            while deaf.links < 2:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
