"""The responder's handshake guard over real WebSockets (``respond(..., guard=...)``): under
load the dialling side completes through the cookie round by itself, a recorded Hello1 sent
again is refused before any public-key work, an address over its share is refused, and every
handshake the guard let through is released however it ended."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from trio_websocket import open_websocket_url
from sonet.transport.ws_errors import ConnectionClosed

from sonet.core import limits
from sonet.core.channel import Channel
from sonet.core.client_api import CLIENT_FRAMES, Ping, Pong
from sonet.core.crypto import CryptoPolicy
from sonet.core.handshake import Cookie, Handshake, HandshakeError, Hello2, Role
from sonet.core.handshake_guard import GuardSettings, HandshakeGuard
from sonet.core.ratelimit import Rate
from sonet.core.wire import decode_frame
from sonet.transport import DialError, SecureSocket, dial, respond, serve
from sonet.transport.server import Connection
from sonet.transport.websocket import UpgradeRequest

from .echo import new_key

HANG_S = 20  # hang guard, never a performance threshold


@asynccontextmanager
async def guarded(guard: HandshakeGuard) -> AsyncIterator[tuple[str, str]]:
    """A responder that screens with ``guard`` and answers Pings; yields (url, its fingerprint)."""
    key = new_key()

    async def handler(request: UpgradeRequest, conn: Connection) -> None:
        ws = await request.accept()
        try:
            done = await respond(ws, identity=key, policy=CryptoPolicy(), prologue=b"/client", guard=guard, address=conn.address)
            if done is None:
                return
            conn.authenticated()
            sock = SecureSocket(ws, Channel(done.keys, CLIENT_FRAMES), done.peer)
            ping = await sock.receive()
            assert isinstance(ping, Ping)
            await sock.send(Pong(request=ping.request))
            await trio.sleep_forever()
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(lambda task_status: serve(handler, "127.0.0.1", 0, plain_http_answer="guarded\n", task_status=task_status))
        yield f"ws://127.0.0.1:{server.port}", key.public.fingerprint
        nursery.cancel_scope.cancel()


async def ping_through(url: str, fingerprint: str) -> None:
    async with dial(url, "/client", identity=new_key(), expected_peer=fingerprint, frames=CLIENT_FRAMES) as sock:
        await sock.send(Ping(request=1))
        assert await sock.receive() == Pong(request=1)


def initiator() -> Handshake:
    return Handshake(Role.INITIATOR, identity=new_key(), policy=CryptoPolicy(), rng=os.urandom, prologue=b"/client")


async def first_answer(url: str, hello1: bytes) -> object:
    """Send one Hello1 on a fresh connection; the responder's answer, decoded."""
    async with open_websocket_url(url + "/client", max_message_size=limits.MAX_RECORD_BYTES) as ws:
        await ws.send_message(hello1)
        return decode_frame(await ws.get_message())


async def test_under_load_a_dial_completes_through_the_cookie_round() -> None:
    guard = HandshakeGuard(GuardSettings(max_in_progress=0), rng=os.urandom)  # always under load
    with trio.fail_after(HANG_S):
        async with guarded(guard) as (url, fingerprint):
            await ping_through(url, fingerprint)
            await ping_through(url, fingerprint)
    assert guard.counts == {"proceeded": 2, "cookies": 2, "replayed": 0, "rate_limited": 0}


async def test_under_load_a_hello1_without_its_cookie_gets_only_a_cookie() -> None:
    guard = HandshakeGuard(GuardSettings(max_in_progress=0), rng=os.urandom)
    with trio.fail_after(HANG_S):
        async with guarded(guard) as (url, _):
            answer = await first_answer(url, initiator().data_to_send()[0])
    assert isinstance(answer, Cookie)
    assert guard.counts["proceeded"] == 0 and guard.in_progress == 0


async def test_a_recorded_hello1_sent_again_is_refused_as_a_replay() -> None:
    guard = HandshakeGuard(GuardSettings(), rng=os.urandom)
    recorded = initiator().data_to_send()[0]
    with trio.fail_after(HANG_S):
        async with guarded(guard) as (url, fingerprint):
            assert isinstance(await first_answer(url, recorded), Hello2)  # the original: worked on
            for _ in range(5):
                answer = await first_answer(url, recorded)
                assert isinstance(answer, HandshakeError) and answer.code == "replayed"
            await ping_through(url, fingerprint)  # everyone else is served meanwhile
    assert guard.counts["replayed"] == 5 and guard.counts["proceeded"] == 2


async def test_an_address_over_its_share_is_refused_with_rate_limited() -> None:
    guard = HandshakeGuard(GuardSettings(per_address=Rate(per_second=0.001, burst=2)), rng=os.urandom)
    with trio.fail_after(HANG_S):
        async with guarded(guard) as (url, fingerprint):
            await ping_through(url, fingerprint)
            await ping_through(url, fingerprint)
            with pytest.raises(DialError) as info:
                await ping_through(url, fingerprint)
    assert info.value.code == "rate_limited"
    assert "too many handshakes from this address" in str(info.value)


async def test_every_handshake_let_through_is_released() -> None:
    guard = HandshakeGuard(GuardSettings(), rng=os.urandom)
    with trio.fail_after(HANG_S):
        async with guarded(guard) as (url, fingerprint):
            await ping_through(url, fingerprint)  # completed
            with pytest.raises(DialError):
                async with dial(url, "/client", identity=new_key(), expected_peer=new_key().public.fingerprint, frames=CLIENT_FRAMES):
                    pytest.fail("connected to a responder with another key")  # failed midway
            await first_answer(url, initiator().data_to_send()[0])  # abandoned after Hello2
            while guard.in_progress:  # the responder sees the close a moment later
                await trio.sleep(0.01)
    assert guard.counts["proceeded"] == 3
