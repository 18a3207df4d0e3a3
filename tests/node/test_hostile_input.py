"""Hostile input against a live in-process node.

While a legitimate, registered device keeps its connection open, raw WebSockets to
``/client`` send garbage at every stage (before, during and after the secure-channel
handshake). Each hostile connection must be refused cleanly (a HandshakeError or ErrorFrame
where the protocol has one, then a close), and afterwards the node must still serve: the legit
connection sends and receives, fresh connections complete the handshake, and ``Node.run``
has not crashed. The tests share one node (``shared_node``) and its alice and bob; the two that
fill bob's mailbox and count the node's connections get a node of their own.
"""

from __future__ import annotations

import itertools
import os
import random
import types
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import msgpack
import pytest
import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
    wrap_client_stream,
)

import sonet.transport.handshake
from sonet.core import limits
from sonet.core.channel import Channel
from sonet.core.client_api import CLIENT_FRAMES, Accepted, Ack, Drained, ErrorFrame, LinkOffer, Ping, Pong, SendBatch, Welcome
from sonet.core.crypto import CryptoMode, CryptoPolicy, SigningKey
from sonet.core.handshake import Auth3, Handshake, HandshakeError, Hello2, Role
from sonet.core.wire import decode_frame, encode_frame, packb
from sonet.transport import run_initiator

from .conftest import HANG_S, NODE_NAME, RunningNode, collect_until_drained, next_deliver, shared_node
from .kit import Account, RawConnection, access_token, opaque_envelope

ALICE = f"alice@{NODE_NAME}"
BOB = f"bob@{NODE_NAME}"

# WebSocket close codes (RFC 6455)
PROTOCOL_ERROR = 1002
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009


@dataclass
class Env:
    node: RunningNode
    alice: Account
    bob: Account
    #: exchanges notes with alice's legit connection (bob's mailbox stays for the hostile checks)
    carol: Account

    def identity(self, account: Account) -> SigningKey:
        return account.first.identity

    @asynccontextmanager
    async def legit(self) -> AsyncIterator[RawConnection]:
        """Alice's long-lived connection, open across the hostile traffic."""
        async with self.node.raw(self.identity(self.alice)) as conn:
            assert conn.welcome.account == ALICE
            assert await collect_until_drained(conn) == []
            yield conn


async def _enrolled(node: RunningNode) -> Env:
    return Env(node=node, alice=await node.enroll("alice"), bob=await node.enroll("bob"), carol=await node.enroll("carol"))


@dataclass
class Shared:
    node: RunningNode
    alice: Account
    bob: Account
    carols: Iterator[int]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    with shared_node(tmp_path_factory, "hostile") as node:
        alice, bob = trio.run(node.enroll, "alice"), trio.run(node.enroll, "bob")
        yield Shared(node, alice, bob, itertools.count())


@pytest.fixture
async def env(shared: Shared) -> Env:
    """The module's node, alice and bob, as each test expects them: their mailboxes empty, no
    connection of an earlier test left; and a new carol (alice's notes to her are a stranger's
    first message requests, as on a new node)."""
    with trio.fail_after(HANG_S):
        await shared.node.settle()
    assert shared.node.alive
    assert await shared.node.pending(ALICE) == [] and await shared.node.pending(BOB) == []
    carol = await shared.node.enroll(f"carol{next(shared.carols)}")
    return Env(node=shared.node, alice=shared.alice, bob=shared.bob, carol=carol)


@pytest.fixture
async def own_env(running: RunningNode) -> Env:
    """A node of the test's own (the test fills bob's mailbox and counts the node's sessions)."""
    return await _enrolled(running)


async def assert_serves(env: Env, legit: RawConnection) -> None:
    """The node still works for everyone: the legit connection and new ones."""
    assert env.node.alive
    assert legit.error is None
    # the open connection can still send and receive (a note to carol, and one back: a live push)
    assert isinstance(await legit.request(lambda n: Ping(request=n)), Pong)
    out = opaque_envelope(env.carol.first)
    reply = await legit.request(lambda n: SendBatch(request=n, envelopes=(out,)))
    assert isinstance(reply, Accepted) and reply.stored == 1
    assert out.id in {i.id for i in await env.node.pending(env.carol.address)}
    note = opaque_envelope(env.alice.first)
    async with env.node.raw(env.identity(env.carol)) as carol:
        reply = await carol.request(lambda n: SendBatch(request=n, envelopes=(note,)))
        assert isinstance(reply, Accepted) and reply.stored == 1
    pushed = await next_deliver(legit)
    assert [i.envelope.id for i in pushed.items] == [note.id]
    await legit.send(Ack(ids=(note.id,)))
    assert isinstance(await legit.request(lambda n: Ping(request=n)), Pong)
    assert await env.node.pending(ALICE) == []
    # new connections complete the handshake, registered or not
    async with env.node.raw(env.identity(env.bob)) as conn:
        assert (conn.welcome.account, conn.welcome.device) == (BOB, 1)
        assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
    async with env.node.raw(SigningKey.generate(CryptoMode.HYBRID, os.urandom)) as conn:
        assert conn.welcome.node == NODE_NAME and conn.welcome.account is None
    assert env.node.alive


# Raw WebSocket helpers ------------------------------------------------------------------


def open_raw(env: Env, path: str = "/client"):  # noqa: ANN201 - async context manager
    return open_websocket_url(
        env.node.url + path, max_message_size=limits.MAX_RECORD_BYTES, connect_timeout=HANG_S, disconnect_timeout=2
    )


async def read_until_closed(ws: WebSocketConnection) -> tuple[list[bytes | str], CloseReason]:
    received: list[bytes | str] = []
    while True:
        try:
            received.append(await ws.get_message())
        except ConnectionClosed as exc:
            return received, exc.reason


async def send_quietly(ws: WebSocketConnection, message: bytes | str) -> None:
    """Send; the node may already have closed the connection (that is checked afterwards)."""
    try:
        await ws.send_message(message)
    except ConnectionClosed:
        pass


async def assert_handshake_refused(ws: WebSocketConnection, *, explained: bool = True) -> str:
    """The node answers with one plaintext HandshakeError (unless it could not even parse a
    binary message) and closes with 1002; returns the error code."""
    received, reason = await read_until_closed(ws)
    assert reason.code == PROTOCOL_ERROR
    if explained:
        assert len(received) == 1
        refusal = decode_frame(received[0])  # type: ignore[arg-type]
        assert isinstance(refusal, HandshakeError)
        assert reason.reason == refusal.code
        return refusal.code
    assert received == []
    return reason.reason or ""


def initiator(env: Env, identity: SigningKey | None = None) -> Handshake:
    return Handshake(
        Role.INITIATOR,
        identity=identity or SigningKey.generate(CryptoMode.HYBRID, os.urandom),
        policy=CryptoPolicy(),
        rng=os.urandom,
        prologue=b"/client",
        expected_peer=env.node.fingerprint,
    )


def valid_hello1(env: Env) -> bytes:
    [hello] = initiator(env).data_to_send()
    return hello


async def complete_handshake(env: Env, ws: WebSocketConnection, identity: SigningKey | None = None) -> Channel:
    event = await run_initiator(initiator(env, identity), send=ws.send_message, receive=ws.get_message, peer="node")
    channel = Channel(event.keys, CLIENT_FRAMES)
    channel.receive_data(await ws.get_message())
    assert isinstance(channel.next_event(), Welcome)
    return channel


async def assert_closed_with_error(ws: WebSocketConnection, channel: Channel, code: str) -> None:
    """After the handshake: an ErrorFrame(request=0, code) is the node's last word, then 1008."""
    received, reason = await read_until_closed(ws)
    frames = []
    for record in received:
        channel.receive_data(record)  # type: ignore[arg-type]
        frames.append(channel.next_event())
    assert frames, f"the node closed without an ErrorFrame ({reason})"
    last = frames[-1]
    assert isinstance(last, ErrorFrame) and last.request == 0 and last.code == code, (frames, reason)
    assert all(isinstance(f, (Drained, Pong)) for f in frames[:-1]), frames  # Pong: a replayed Ping's original
    assert (reason.code, reason.reason) == (POLICY_VIOLATION, code)


# Before the handshake -------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 7, 300, 5000])
async def test_random_bytes(env: Env, size: int) -> None:
    with trio.fail_after(HANG_S):
        async with env.legit() as legit:
            async with open_raw(env) as ws:
                await ws.send_message(random.Random(size).randbytes(size))
                await assert_handshake_refused(ws)
            await assert_serves(env, legit)


async def test_text_message(env: Env) -> None:
    with trio.fail_after(HANG_S):
        async with env.legit() as legit:
            async with open_raw(env) as ws:
                await ws.send_message("hello, is this the node?")
                await assert_handshake_refused(ws, explained=False)
            await assert_serves(env, legit)


async def test_oversized_message_closes_with_1009(env: Env) -> None:
    with trio.fail_after(HANG_S):
        async with env.legit() as legit:
            async with open_raw(env) as ws:
                await send_quietly(ws, bytes(limits.MAX_RECORD_BYTES + 1))
                received, reason = await read_until_closed(ws)
                assert received == [] and reason.code == MESSAGE_TOO_BIG
            # before authentication the WebSocket limit IS the handshake cap: one byte above
            # it closes with 1009 too (transport/server.py), nothing of it kept
            async with open_raw(env) as ws:
                await send_quietly(ws, bytes(limits.MAX_HANDSHAKE_MESSAGE_BYTES + 1))
                received, reason = await read_until_closed(ws)
                assert received == [] and reason.code == MESSAGE_TOO_BIG
            await assert_serves(env, legit)


def _hello1_variants() -> list[tuple[str, Callable[[list], list]]]:
    """Hand-built Hello1 arrays: [tag, v, offer, x25519, mlkem, nonce]."""

    def put(i: int, value: object) -> Callable[[list], list]:
        return lambda h: h[:i] + [value] + h[i + 1 :]

    return [
        ("x25519 as str", put(3, "x" * 32)),
        ("mlkem as str", put(4, "k" * 1184)),
        ("nonce as int", put(5, 7)),
        ("version as str", put(1, "1")),
        ("offer as str", put(2, "hybrid")),
        ("offer of ints", put(2, [1, 2])),
        ("offer of bytes", put(2, [b"hybrid"])),
        ("offer as map", put(2, {"hybrid": 1})),
        ("nil everywhere", lambda h: [h[0], None, None, None, None, None]),
        ("missing field", lambda h: h[:-1]),
        ("extra field", lambda h: h + [b"more"]),
        ("tag only", lambda h: h[:1]),
        ("tag as str", put(0, "1")),
        ("Hello2 tag", put(0, 2)),
        ("unknown tag", put(0, 99)),
        ("not an array", lambda h: {"tag": 1}),  # type: ignore[dict-item]
        ("version 2", put(1, 2)),
        ("negative version", put(1, -1)),
        ("huge int", put(1, 2**64 - 1)),
        ("unknown mode", put(2, ["rot13"])),
        ("empty offer", put(2, [])),
        ("too many modes", put(2, ["hybrid"] * 9)),
        ("weaker mode only", put(2, ["classical"])),
        ("short nonce", put(5, b"n" * 31)),
        ("short x25519", put(3, b"x" * 31)),
        ("low-order x25519", put(3, bytes(32))),
        ("short mlkem", put(4, b"k" * 1183)),
        ("malformed mlkem", put(4, b"\xff" * 1184)),
        ("deep nesting", put(2, [[[[[[[[[["hybrid"]]]]]]]]]])),
    ]


@pytest.mark.parametrize("mutate", [m for _, m in _hello1_variants()], ids=[n for n, _ in _hello1_variants()])
async def test_malformed_hello1(env: Env, mutate: Callable[[list], list]) -> None:
    with trio.fail_after(HANG_S):
        hello = msgpack.unpackb(valid_hello1(env), raw=False)
        async with env.legit() as legit:
            async with open_raw(env) as ws:
                await ws.send_message(msgpack.packb(mutate(hello), use_bin_type=True))
                await assert_handshake_refused(ws)
            await assert_serves(env, legit)


@pytest.mark.parametrize("keep", [1, 2, 10, 100, -1])
async def test_truncated_hello1(env: Env, keep: int) -> None:
    with trio.fail_after(HANG_S):
        hello = valid_hello1(env)
        async with env.legit() as legit:
            async with open_raw(env) as ws:
                await ws.send_message(hello[:keep])
                await assert_handshake_refused(ws)
            await assert_serves(env, legit)


@pytest.mark.parametrize(
    ("garbage", "code"),
    [
        (b"\x00" * 64, "bad_input"),
        (b"\xc1", "bad_input"),
        (packb([3, "not bytes"]), "bad_input"),
        (encode_frame(Auth3(auth=os.urandom(200))), "decrypt_failed"),  # not boxed under the right key
        (encode_frame(HandshakeError(code="unavailable", message="I give up")), "unavailable"),
        # a code the registry (core/errors.py) does not know is not echoed back
        (encode_frame(HandshakeError(code="nope", message="I give up")), "bad_input"),
        ("text after hello", "bad_input"),
        (None, "bad_input"),  # a second Hello1
    ],
    ids=["zeros", "reserved-byte", "auth3-wrong-type", "auth3-undecryptable", "handshake-error", "handshake-error-unknown-code", "text", "hello1-again"],
)
async def test_valid_hello1_then_garbage(env: Env, garbage: bytes | str | None, code: str) -> None:
    with trio.fail_after(HANG_S):
        async with env.legit() as legit:
            async with open_raw(env) as ws:
                await ws.send_message(valid_hello1(env))
                assert isinstance(decode_frame(await ws.get_message()), Hello2)  # type: ignore[arg-type]
                await ws.send_message(valid_hello1(env) if garbage is None else garbage)
                assert await assert_handshake_refused(ws, explained=not isinstance(garbage, str)) == code
            await assert_serves(env, legit)


async def test_auth3_from_a_foreign_handshake_is_refused(env: Env) -> None:
    """An Auth3 computed for another handshake (another transcript) does not authenticate."""
    with trio.fail_after(HANG_S):
        async with env.legit() as legit:
            async with open_raw(env) as donor, open_raw(env) as ws:
                hs = initiator(env, env.identity(env.bob))
                await donor.send_message(hs.data_to_send()[0])
                hs.receive_data(await donor.get_message())
                [stolen_auth3] = hs.data_to_send()
                await ws.send_message(valid_hello1(env))
                await ws.get_message()
                await ws.send_message(stolen_auth3)
                assert await assert_handshake_refused(ws) == "decrypt_failed"
            await assert_serves(env, legit)


@pytest.mark.parametrize("stage", ["silent", "after-hello1"])
async def test_stalled_handshake_is_closed_after_the_deadline(env: Env, stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the node's handshake deadline shrinks (its module reference to core.limits);
    # the devices in this test keep the real one.
    constants = {k: getattr(limits, k) for k in dir(limits) if k.isupper()}
    monkeypatch.setattr(sonet.transport.handshake, "limits", types.SimpleNamespace(**{**constants, "HANDSHAKE_DEADLINE_S": 1.5}))
    with trio.fail_after(HANG_S):
        async with env.legit() as legit:
            async with open_raw(env) as ws:
                if stage == "after-hello1":
                    await ws.send_message(valid_hello1(env))
                    assert isinstance(decode_frame(await ws.get_message()), Hello2)  # type: ignore[arg-type]
                # a stalled handshake holds up nobody else
                await assert_serves(env, legit)
                received, reason = await read_until_closed(ws)
                assert received == []
                assert (reason.code, reason.reason) == (POLICY_VIOLATION, "handshake timeout")
            await assert_serves(env, legit)


@pytest.mark.parametrize("path", ["/nope", "/", "/client/extra", "/CLIENT"])
async def test_unknown_path_is_rejected_with_404(env: Env, path: str) -> None:
    with trio.fail_after(HANG_S):
        async with env.legit() as legit:
            with pytest.raises(ConnectionRejected) as err:
                async with open_raw(env, path):
                    raise AssertionError(f"{path} was accepted")
            assert err.value.status_code == 404
            assert b"/client" in (err.value.body or b"")
            await assert_serves(env, legit)


# After the handshake --------------------------------------------------------------------


def _flip(record: bytes) -> bytes:
    return record[:-1] + bytes([record[-1] ^ 1])


POST_HANDSHAKE = {
    # name: (what to send, given our channel -> list of messages; the node's error code)
    "random-record": (lambda ch: [os.urandom(100)], "decrypt_failed"),
    "empty-record": (lambda ch: [b""], "decrypt_failed"),
    "bit-flipped": (lambda ch: [_flip(ch.send(Ping(request=1)))], "decrypt_failed"),
    "replayed": (lambda ch: [r := ch.send(Ping(request=1)), r], "decrypt_failed"),
    "reordered": (lambda ch: [ch.send(Ping(request=1)), ch.send(Ping(request=2))][::-1], "decrypt_failed"),
    "text": (lambda ch: ["a text message"], "bad_input"),
    "garbage-plaintext": (lambda ch: [ch.seal(b"\xc1\xc1\xc1")], "bad_input"),
    "unknown-tag": (lambda ch: [ch.seal(packb([99, 1]))], "bad_input"),
    "handshake-frame": (lambda ch: [ch.seal(packb([3, b"auth"]))], "unexpected_frame"),
    "welcome": (
        lambda ch: [ch.send(Welcome(node="evil.example", account=None, device=None, time=0, one_time_left=0, pq_one_time_left=0, witnesses=0, minimum_crypto_mode="hybrid"))],
        "unexpected_frame",
    ),
    "pong": (lambda ch: [ch.send(Pong(request=1))], "unexpected_frame"),
    "link-offer": (lambda ch: [ch.send(LinkOffer(slot=bytes(16), account=ALICE, provisioning=b"p", device_list=b"l"))], "unexpected_frame"),
    "sendbatch-wrong-types": (lambda ch: [ch.seal(packb([15, 1, "not a list"]))], "bad_input"),
    "sendbatch-empty": (lambda ch: [ch.seal(packb([15, 1, []]))], "bad_input"),
    "ack-short-ids": (lambda ch: [ch.seal(packb([18, [b"short"]]))], "bad_input"),
    "deep-nesting": (lambda ch: [ch.seal(packb([18, [[[[[[[[[[b"x" * 16]]]]]]]]]]]))], "bad_input"),
    # FetchLeaves (tag 54): an empty or oversized leaf range is malformed, not just refused
    "fetchleaves-empty": (lambda ch: [ch.seal(packb([54, 1, 3, 3]))], "bad_input"),
    "fetchleaves-backwards": (lambda ch: [ch.seal(packb([54, 1, 3, 1]))], "bad_input"),
    "fetchleaves-too-many": (lambda ch: [ch.seal(packb([54, 1, 0, limits.MAX_LEAVES_PER_FETCH + 1]))], "bad_input"),
    # a typing indicator far above what one needs after sealing: refused before anyone buffers it
    "sendbatch-ephemeral-over-cap": (
        lambda ch: [ch.seal(packb([15, 1, [[1, bytes(16), BOB, 1, 2**40, 2, bytes(limits.MAX_EPHEMERAL_BODY + 1)]]]))],
        "bad_input",
    ),
}


@pytest.mark.parametrize("registered", [False, True], ids=["unregistered", "registered"])
@pytest.mark.parametrize("case", list(POST_HANDSHAKE))
async def test_bad_records_after_handshake(env: Env, case: str, registered: bool) -> None:
    build, code = POST_HANDSHAKE[case]
    with trio.fail_after(HANG_S):
        async with env.legit() as legit:
            async with open_raw(env) as ws:
                channel = await complete_handshake(env, ws, env.identity(env.bob) if registered else None)
                for message in build(channel):
                    await send_quietly(ws, message)
                await assert_closed_with_error(ws, channel, code)
            await assert_serves(env, legit)
        assert await env.node.pending(BOB) == []


async def test_oversized_record_after_handshake(env: Env) -> None:
    with trio.fail_after(HANG_S):
        async with env.legit() as legit:
            async with open_raw(env) as ws:
                await complete_handshake(env, ws)
                await send_quietly(ws, bytes(limits.MAX_RECORD_BYTES + 1))
                received, reason = await read_until_closed(ws)
                assert received == [] and reason.code == MESSAGE_TOO_BIG
            await assert_serves(env, legit)


async def test_ack_from_unregistered_device_closes_the_connection(env: Env) -> None:
    """An Ack has no request number to answer, so refusing it is a connection-level error:
    ErrorFrame(request=0) and then the node closes, as ``ErrorFrame`` documents."""
    with trio.fail_after(HANG_S):
        async with env.legit() as legit:
            async with open_raw(env) as ws:
                channel = await complete_handshake(env, ws)
                await ws.send_message(channel.send(Ack(ids=(bytes(16),))))
                await assert_closed_with_error(ws, channel, "not_registered")
            await assert_serves(env, legit)


# Drops in the middle of a SendBatch -----------------------------------------------------


class CuttableStream(trio.abc.Stream):
    """A TCP stream that can be cut after the first ``cut_after`` bytes of the next write."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self.cut_after: int | None = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.cut_after is None:
            await self.inner.send_all(data)
            return
        await self.inner.send_all(bytes(data)[: self.cut_after])
        await self.inner.aclose()
        raise trio.BrokenResourceError("cut")

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _wait_sessions_gone(env: Env, baseline: int) -> None:
    """Wait until the node has finished with every connection but the legit ones."""
    while env.node.active_sessions > baseline:
        await trio.sleep(0.01)


async def _batch_outcome(env: Env, ids: set[bytes]) -> int:
    stored = ids & {i.id for i in await env.node.pending(BOB)}
    assert len(stored) in (0, len(ids)), f"half a batch was stored: {len(stored)} of {len(ids)}"
    return len(stored)


@pytest.mark.parametrize("cut", ["after-send", "mid-message"])
async def test_drop_during_sendbatch_stores_all_or_nothing(own_env: Env, cut: str) -> None:
    env = own_env
    with trio.fail_after(HANG_S):
        async with env.node.raw(env.identity(env.bob)) as conn:
            access = (await access_token(conn, env.bob.first.account),)  # alice is bob's contact
        async with env.legit() as legit:
            baseline = env.node.active_sessions
            for round_ in range(3):
                envs = tuple(opaque_envelope(env.bob.first) for i in range(150))
                ids = {e.id for e in envs}
                host, port = env.node.url.removeprefix("ws://").rsplit(":", 1)
                async with trio.open_nursery() as nursery:
                    stream = CuttableStream(await trio.open_tcp_stream(host, int(port)))
                    ws = await wrap_client_stream(nursery, stream, f"{host}:{port}", "/client", max_message_size=limits.MAX_RECORD_BYTES)  # type: ignore[arg-type]
                    channel = await complete_handshake(env, ws, env.identity(env.alice))
                    record = channel.send(SendBatch(request=1, envelopes=envs, access=access))
                    if cut == "mid-message":
                        stream.cut_after = len(record) // 2 + round_ * 1000
                        await send_quietly(ws, record)
                    else:
                        await ws.send_message(record)
                        await stream.inner.aclose()  # gone at once, no close handshake, no waiting for Accepted
                    nursery.cancel_scope.cancel()
                await _wait_sessions_gone(env, baseline)
                stored = await _batch_outcome(env, ids)
                if cut == "mid-message":
                    assert stored == 0  # the node never saw the whole record
                # the device, never having seen Accepted, sends the batch again: exactly once in all
                async with env.node.raw(env.identity(env.alice)) as conn:
                    reply = await conn.request(lambda n, envs=envs: SendBatch(request=n, envelopes=envs, access=access))
                    assert isinstance(reply, Accepted) and reply.stored == len(envs) - stored
                assert await _batch_outcome(env, ids) == len(envs)
                await assert_serves(env, legit)
