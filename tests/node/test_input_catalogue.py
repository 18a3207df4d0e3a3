"""A catalogue of hostile input against a live node, checked against the documented errors.

Each entry names one malformed, oversized, replayed or out-of-order input and what the node
must do with it: the error code it answers with and whether the connection closes (and with
which WebSocket close code), or the frame it answers with. Every code a case expects must be
in the "## Errors" table of docs/protocol.md (parsed here), so the documentation and the
behaviour cannot drift apart. After each case the node must still serve a new device:
register, send, receive.

Inputs go in where they hurt: raw WebSocket messages before and during the handshake, records
on an established channel as a device (registered or not), and records on ``/federation`` as a
pinned peer node (or as an unpinned one). tests/e2e/test_input_catalogue.py feeds a few of the
same cases to a real ``sonet-node run`` process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from sonet.core import limits
from sonet.core.channel import Channel
from sonet.core.client_api import (
    CLIENT_FRAMES,
    Accepted,
    Ack,
    DeviceMismatch,
    Drained,
    Deliver,
    ErrorFrame,
    FetchConsistency,
    FetchLeaves,
    Ping,
    Pong,
    Register,
    SendBatch,
    Welcome,
)
from sonet.core.crypto import CryptoPolicy, SigningKey
from sonet.core.errors import RemoteProtocolError
from sonet.core.federation_api import FEDERATION_FRAMES, Push, PushResult, Transit
from sonet.core.handshake import Auth3, Handshake, HandshakeError, Role
from sonet.core.wire import Frame, decode_frame, encode_frame, encode_struct, packb
from sonet.transport import run_initiator
from tests.federation.net import new_key, pin, transit

from .conftest import HANG_S, NODE_NAME, RunningNode, collect_until_drained, shared_node
from .kit import Account, Member, opaque_envelope, wall_ms
from .test_hostile_input import read_until_closed, send_quietly

__all__ = ["Case", "Expect", "Probe", "Seen", "CATALOGUE", "documented_errors", "check"]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
#: the request number of the request whose answer a case looks at
REQ = 7
PEER = "one.example"


# Documented errors ---------------------------------------------------------------------------


def documented_errors(text: str | None = None) -> tuple[set[str], set[int]]:
    """(error codes, WebSocket close codes) in the tables of the "## Errors" section."""
    text = DOCS.read_text() if text is None else text
    section = re.search(r"^## Errors\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert section, "docs/protocol.md has no '## Errors' section"
    first_cells = re.findall(r"^\| *([^|]+?) *\|", section.group(1), re.M)
    codes = {m.group(1) for cell in first_cells if (m := re.fullmatch(r"`([a-z_]+)`", cell))}
    closes = {int(cell) for cell in first_cells if cell.isdigit()}
    return codes, closes


# What a case expects, and what the node did ---------------------------------------------------


@dataclass(frozen=True)
class Expect:
    #: the error code the node answers with (a HandshakeError, an ErrorFrame, or only the
    #: close reason); None: no error
    code: str | None = None
    #: the WebSocket close code; None: the connection stays open (and still answers a Ping)
    close: int | None = None
    #: the answer: a frame to compare with, or a frame class
    answer: Frame | type[Frame] | None = None


def handshake(code: str) -> Expect:
    """Refused during the handshake: a HandshakeError, then close 1002."""
    return Expect(code=code, close=1002)


def fatal(code: str) -> Expect:
    """A connection error: ErrorFrame(request=0) as the last record, then close 1008."""
    return Expect(code=code, close=1008)


def refused(code: str) -> Expect:
    """A request error: ErrorFrame(request=REQ); the connection stays open."""
    return Expect(code=code, answer=ErrorFrame)


def answered(answer: Frame | type[Frame]) -> Expect:
    return Expect(answer=answer)


@dataclass
class Seen:
    code: str | None = None
    close: int | None = None
    reason: str | None = None
    answer: Frame | None = None

    def codes(self) -> set[str]:
        """Every code the node used: the error code and the outcomes of a PushResult."""
        return ({self.code} if self.code else set()) | set(getattr(self.answer, "outcomes", ()))


@dataclass
class Probe:
    """The node under attack. Cases that need accounts or a pinned peer run only against an
    in-process node (``node`` set); the others also against a process (tests/e2e)."""

    url: str
    fingerprint: str
    node: RunningNode | None = None
    #: registered accounts with one device each (alice sends, bob receives)
    alice: Account | None = None
    bob: Account | None = None
    #: the key of peer PEER, pinned on the node
    peer: SigningKey | None = None


# Talking to the node --------------------------------------------------------------------------


def _ws(probe: Probe, path: str, *, announce: str = PEER):  # noqa: ANN202 - async context manager
    # on /federation as a peer does: announcing its node name (PEER's is pinned, in-process)
    headers = [(b"sonet-node", announce.encode())] if path == "/federation" else None
    return open_websocket_url(
        probe.url + path, max_message_size=limits.MAX_RECORD_BYTES, connect_timeout=HANG_S, disconnect_timeout=2,
        extra_headers=headers,
    )


def _initiator(path: str, *, identity: SigningKey | None = None, pin: str | None = None) -> Handshake:
    return Handshake(
        Role.INITIATOR, identity=identity or new_key(), policy=CryptoPolicy(), rng=os.urandom, prologue=path.encode(), expected_peer=pin
    )


def hello1() -> bytes:
    [message] = _initiator("/client").data_to_send()
    return message


def edited(message: bytes, index: int, value: Any) -> bytes:
    """``message`` (a msgpack array) with element ``index`` replaced: bytes no encoder makes."""
    items = msgpack.unpackb(message, raw=False)
    items[index] = value
    return packb(items)


def _wire(obj: Any) -> Any:
    """A struct as the plain msgpack value it travels as."""
    return msgpack.unpackb(encode_struct(obj), raw=False)


async def before_handshake(probe: Probe, *messages: bytes | str, after_hello1: bool = False) -> Seen:
    """Raw messages to /client instead of (or after) Hello1; the refusal and the close."""
    async with _ws(probe, "/client") as ws:
        if after_hello1:
            await ws.send_message(hello1())
            await ws.get_message()  # Hello2
        for message in messages:
            await send_quietly(ws, message)
        received, reason = await read_until_closed(ws)
    assert len(received) <= 1, received
    refusal = decode_frame(received[0]) if received else None  # type: ignore[arg-type]
    assert refusal is None or isinstance(refusal, HandshakeError), refusal
    if refusal is None:  # no HandshakeError (a text message, an oversize one): the close says it
        return Seen(code=reason.reason if reason.code in (1002, 1008) else None, close=reason.code, reason=reason.reason)
    return Seen(code=refusal.code, close=reason.code, reason=reason.reason)


Build = Callable[[Channel], Sequence[bytes | str]]


async def in_session(probe: Probe, build: Build, *, identity: SigningKey | None = None, path: str = "/client") -> Seen:
    """Complete the handshake (as ``identity``, default a new device), send what ``build``
    makes, and read the node's answer; a connection left open must still answer a Ping."""
    async with _ws(probe, path) as ws:
        hs = _initiator(path, identity=identity, pin=probe.fingerprint)
        done = await run_initiator(hs, send=ws.send_message, receive=ws.get_message, peer="node")
        channel = Channel(done.keys, CLIENT_FRAMES if path == "/client" else FEDERATION_FRAMES)
        if path == "/client":
            channel.receive_data(await ws.get_message())
            assert isinstance(channel.next_event(), Welcome)
        for message in build(channel):
            await send_quietly(ws, message)
        seen = await _answer(ws, channel)
        if seen.close is None:
            await ws.send_message(channel.send(Ping(request=REQ + 1)))
            assert (await _answer(ws, channel, REQ + 1)).answer == Pong(request=REQ + 1)
        return seen


async def _answer(ws: WebSocketConnection, channel: Channel, request: int = REQ) -> Seen:
    """The answer to ``request``, or a connection error (then the close), or a close."""
    while True:
        try:
            message = await ws.get_message()
        except ConnectionClosed as exc:
            return Seen(close=exc.reason.code, reason=exc.reason.reason)
        channel.receive_data(message)  # type: ignore[arg-type]
        frame = channel.next_event()
        if isinstance(frame, ErrorFrame) and frame.request == 0:
            rest, reason = await read_until_closed(ws)
            assert rest == [], "the node sent more after its connection error"
            return Seen(code=frame.code, close=reason.code, reason=reason.reason, answer=frame)
        if getattr(frame, "request", None) == request:
            return Seen(code=frame.code if isinstance(frame, ErrorFrame) else None, answer=frame)
        assert isinstance(frame, (Drained, Deliver, Pong, Accepted, PushResult)), frame  # answers to earlier requests


async def unpinned_peer(probe: Probe) -> Seen:
    """The handshake on /federation with a key no peer is pinned to."""
    async with _ws(probe, "/federation", announce="stranger.example") as ws:
        with pytest.raises(RemoteProtocolError) as refusal:
            hs = _initiator("/federation", pin=probe.fingerprint)
            await run_initiator(hs, send=ws.send_message, receive=ws.get_message, peer="node")
        received, reason = await read_until_closed(ws)
    assert received == []
    return Seen(code=refusal.value.code, close=reason.code, reason=reason.reason)


# The catalogue --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    send: Callable[[Probe], Awaitable[Seen]]
    expect: Expect
    #: checks on the node's state afterwards (e.g. nothing stored)
    after: Callable[[Probe], Awaitable[None]] | None = None
    #: it runs on a node of its own, in the test's trio loop: it stores envelopes for bob (and counts them)
    own_node: bool = False


def _as(who: str, build: Build) -> Callable[[Probe], Awaitable[Seen]]:
    """Send ``build``'s records in a session of a new device ("new"), alice's device
    ("alice") or the pinned peer ("peer", on /federation)."""

    async def send(probe: Probe) -> Seen:
        identity = {"new": None, "alice": probe.alice and probe.alice.first.identity, "peer": probe.peer}[who]
        return await in_session(probe, build, identity=identity, path="/federation" if who == "peer" else "/client")

    return send


def _raw(*messages: bytes | str | Callable[[], bytes], after_hello1: bool = False) -> Callable[[Probe], Awaitable[Seen]]:
    """Raw WebSocket messages to /client instead of Hello1 (or after it); callables are made
    when the case runs."""

    async def send(probe: Probe) -> Seen:
        built = [m() if callable(m) else m for m in messages]
        return await before_handshake(probe, *built, after_hello1=after_hello1)

    return send


BOB = f"bob@{NODE_NAME}"


def _to_bob(**fields: Any) -> Any:
    return opaque_envelope((BOB, 1), **fields)


def _batch(*envelopes: Any, request: int = REQ) -> bytes:
    """A SendBatch with envelopes as plain values (valid or not)."""
    return packb([SendBatch.TAG, request, [e if isinstance(e, list) else _wire(e) for e in envelopes]])


def _edit(struct: Any, path: tuple[int, ...], value: Any) -> list[Any]:
    """``struct`` as the plain value it travels as, with the field at ``path`` (indexes into
    the nested arrays) replaced: e.g. an envelope's (v, id, to, device, expires, kind, body)."""
    wire = _wire(struct)
    target = wire
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return wire


def _push(*items: Transit | list[Any], request: int = REQ) -> bytes:
    # the last field: the push's place on its link, 0 = not sequenced (core/federation_api.py)
    return packb([Push.TAG, request, [i if isinstance(i, list) else _wire(i) for i in items], 0])


def _skipping(channel: Channel) -> list[bytes]:
    channel.send(Ping(request=1))  # sealed, never sent: the counter moves on
    return [channel.send(Ping(request=REQ))]


def _flip(record: bytes) -> bytes:
    return record[:-1] + bytes([record[-1] ^ 1])


async def _nothing_stored(probe: Probe) -> None:
    assert probe.node is not None
    assert await probe.node.pending(BOB) == []


def _register(*, by_alice: bool = False, invite: str = "", key: SigningKey | None = None) -> Callable[[Probe], Awaitable[Seen]]:
    """A Register of a new account for a new device, from that device (or from alice's);
    the device list signed with the account key (or ``key``)."""

    async def send(probe: Probe) -> Seen:
        account = Account(address=f"mallory@{NODE_NAME}")
        member = Member.new(account.address)
        frame = Register(
            request=REQ,
            user="mallory",
            invite=invite,
            record=member.record,
            account_identity=account.identity_bytes,
            device_list=account.sign_list([member.fingerprint], version=1, key=key),
            keys=member.keys,
        )
        identity = probe.alice.first.identity if by_alice and probe.alice else member.identity
        return await in_session(probe, lambda ch: [ch.send(frame)], identity=identity)

    return send


async def _bob_has(count: int, probe: Probe) -> None:
    assert probe.node is not None
    assert len(await probe.node.pending(BOB)) == count


async def _expiry_capped(probe: Probe) -> None:
    assert probe.node is not None
    [item] = await probe.node.pending(BOB)
    assert item.expires <= wall_ms() + probe.node.config.envelope_ttl_ms


DUPLICATE = _to_bob()
LATE = _to_bob(expires=wall_ms() + 100 * limits.DEFAULT_ENVELOPE_TTL_MS)

CATALOGUE: list[Case] = [
    # Before and during the handshake --------------------------------------------------------
    Case("garbage instead of Hello1", _raw(b"\x00" * 64), handshake("bad_input")),
    Case("a text message instead of Hello1", _raw("hello, node?"), Expect(code="bad_input", close=1002)),
    Case("an oversize WebSocket message", _raw(bytes(limits.MAX_RECORD_BYTES + 1)), Expect(close=1009)),
    # before authentication the WebSocket cap is the handshake message cap (transport/server.py)
    Case("an oversize handshake message", _raw(bytes(limits.MAX_HANDSHAKE_MESSAGE_BYTES + 1)), Expect(close=1009)),
    Case("Hello1 of another protocol version", _raw(lambda: edited(hello1(), 1, 2)), handshake("version")),
    Case("Hello1 offering only a weaker mode", _raw(lambda: edited(hello1(), 2, ["classical"])), handshake("crypto_mode_refused")),
    Case("Hello1 with a field of the wrong type", _raw(lambda: edited(hello1(), 5, 7)), handshake("bad_input")),
    Case("Hello1 truncated", _raw(lambda: hello1()[:100]), handshake("bad_input")),
    Case("a request frame before the handshake", _raw(encode_frame(Ping(request=1))), handshake("bad_input")),
    Case("a second Hello1 instead of Auth3", _raw(hello1, after_hello1=True), handshake("bad_input")),
    Case("Auth3 not sealed for this handshake", _raw(encode_frame(Auth3(auth=os.urandom(200))), after_hello1=True), handshake("decrypt_failed")),
    # On an established /client channel ------------------------------------------------------
    Case("an oversize frame in a record", _as("alice", lambda ch: [ch.seal(bytes(limits.MAX_FRAME_BYTES + 1))]), fatal("bad_input")),
    Case("an unknown frame tag", _as("alice", lambda ch: [ch.seal(packb([99, REQ]))]), fatal("bad_input")),
    Case("fields of the wrong types", _as("alice", lambda ch: [ch.seal(packb([SendBatch.TAG, str(REQ), []]))]), fatal("bad_input")),
    Case("a text message after the handshake", _as("alice", lambda ch: ["text"]), fatal("bad_input")),
    Case(
        "a frame only the node sends",
        _as("alice", lambda ch: [ch.send(Welcome(node="evil.example", account=None, device=None, time=0, one_time_left=0, pq_one_time_left=0, witnesses=0, minimum_crypto_mode="hybrid"))]),
        fatal("unexpected_frame"),
    ),
    Case("a second Hello1 inside the channel", _as("alice", lambda ch: [ch.seal(hello1())]), fatal("unexpected_frame")),
    Case("a second Hello1 in the clear mid-session", _as("alice", lambda ch: [hello1()]), fatal("decrypt_failed")),
    Case("a replayed record", _as("alice", lambda ch: [r := ch.send(Ping(request=1)), r]), fatal("decrypt_failed")),
    Case("a record after a skipped one", _as("alice", _skipping), fatal("decrypt_failed")),
    Case("a modified record", _as("alice", lambda ch: [_flip(ch.send(Ping(request=REQ)))]), fatal("decrypt_failed")),
    Case("a request before Register", _as("new", lambda ch: [ch.send(SendBatch(request=REQ, envelopes=(_to_bob(),)))]), refused("not_registered"), _nothing_stored),
    Case("an Ack before Register", _as("new", lambda ch: [ch.send(Ack(ids=(bytes(16),)))]), fatal("not_registered")),
    Case("Register from a registered device", _register(by_alice=True), refused("already_registered")),
    Case("Register without an invite", _register(), refused("invite_required")),
    Case("Register with an unknown invite", _register(invite="a" * 32), refused("invite_invalid")),
    Case("Register with a device list signed by another key", _register(invite="a" * 32, key=new_key()), refused("device_list_forged")),
    Case("SendBatch of 257 envelopes", _as("alice", lambda ch: [ch.seal(_batch(*[_to_bob()] * 257))]), fatal("bad_input"), _nothing_stored),
    Case("SendBatch with an empty batch", _as("alice", lambda ch: [ch.seal(_batch())]), fatal("bad_input")),
    Case(
        "an envelope body over 256 KiB",
        _as("alice", lambda ch: [ch.seal(_batch(_to_bob(), _edit(_to_bob(), (6,), bytes(limits.MAX_ENVELOPE_BODY + 1))))]),
        fatal("bad_input"),
        _nothing_stored,
    ),
    Case("an envelope of version 2", _as("alice", lambda ch: [ch.seal(_batch(_edit(_to_bob(), (0,), 2)))]), fatal("bad_input")),
    Case("an envelope id of 15 bytes", _as("alice", lambda ch: [ch.seal(_batch(_edit(_to_bob(), (1,), bytes(15))))]), fatal("bad_input")),
    Case("an envelope of unknown kind", _as("alice", lambda ch: [ch.seal(_batch(_edit(_to_bob(), (5,), 9)))]), fatal("bad_input")),
    Case("an envelope expiring at 0", _as("alice", lambda ch: [ch.seal(_batch(_edit(_to_bob(), (4,), 0)))]), fatal("bad_input")),
    Case("an expired envelope", _as("alice", lambda ch: [ch.send(SendBatch(request=REQ, envelopes=(_to_bob(expires=wall_ms() - 1),)))]), refused("expired"), _nothing_stored),
    Case("an expiry beyond the node's TTL", _as("alice", lambda ch: [ch.send(SendBatch(request=REQ, envelopes=(LATE,)))]), answered(Accepted(request=REQ, stored=1)), _expiry_capped, own_node=True),
    Case(
        "duplicate envelope ids in one batch",
        _as("alice", lambda ch: [ch.send(SendBatch(request=REQ, envelopes=(DUPLICATE, replace(DUPLICATE, body=b"other"))))]),
        answered(Accepted(request=REQ, stored=1)),
        lambda p: _bob_has(1, p),
        own_node=True,
    ),
    Case(
        "a replayed SendBatch",
        _as("alice", lambda ch: [ch.send(SendBatch(request=1, envelopes=(DUPLICATE,))), ch.send(SendBatch(request=REQ, envelopes=(DUPLICATE,)))]),
        answered(Accepted(request=REQ, stored=0)),
        lambda p: _bob_has(1, p),
        own_node=True,
    ),
    Case("a SendBatch to an unknown account", _as("alice", lambda ch: [ch.send(SendBatch(request=REQ, envelopes=(opaque_envelope((f"nobody@{NODE_NAME}", 1)),)))]), refused("unknown_recipient")),
    Case(
        "a SendBatch for a device the account does not have",
        _as("alice", lambda ch: [ch.send(SendBatch(request=REQ, envelopes=(_to_bob(), opaque_envelope((BOB, 2)))))]),
        answered(DeviceMismatch(request=REQ, account=BOB, missing=(), extra=(2,))),
        _nothing_stored,
    ),
    Case("a SendBatch to a node that is no peer", _as("alice", lambda ch: [ch.send(SendBatch(request=REQ, envelopes=(opaque_envelope(("x@nowhere.example", 1)),)))]), refused("unknown_node")),
    Case("an Ack of unknown ids", _as("alice", lambda ch: [ch.send(Ack(ids=(os.urandom(16), os.urandom(16)))), ch.send(Ping(request=REQ))]), answered(Pong(request=REQ))),
    Case("FetchLeaves beyond the newest head", _as("alice", lambda ch: [ch.send(FetchLeaves(request=REQ, start=1000, end=1001))]), refused("bad_request")),
    Case("FetchLeaves of an empty range", _as("alice", lambda ch: [ch.seal(packb([FetchLeaves.TAG, REQ, 3, 3]))]), fatal("bad_input")),
    Case("FetchConsistency beyond the newest head", _as("alice", lambda ch: [ch.send(FetchConsistency(request=REQ, node=NODE_NAME, first=1, second=1000))]), refused("bad_request")),
    # On /federation ------------------------------------------------------------------------
    Case("a peer key that is not pinned", unpinned_peer, Expect(code="unknown_peer", close=1008)),
    Case("a Push with a malformed envelope", _as("peer", lambda ch: [ch.seal(_push(_edit(transit(BOB, origin=PEER), (3, 1), bytes(5))))]), fatal("bad_input"), _nothing_stored),
    Case("a Push with hops beyond the limit", _as("peer", lambda ch: [ch.seal(_push(_edit(transit(BOB, origin=PEER), (2,), limits.MAX_HOPS + 1)))]), fatal("bad_input"), _nothing_stored),
    Case("a Push of an ephemeral envelope", _as("peer", lambda ch: [ch.seal(_push(_edit(transit(BOB, origin=PEER), (3, 5), 2)))]), fatal("bad_input"), _nothing_stored),
    Case("a Push for an unknown account", _as("peer", lambda ch: [ch.seal(_push(transit(f"nobody@{NODE_NAME}", origin=PEER)))]), answered(PushResult(request=REQ, outcomes=("unknown_account",)))),
    Case("a Push of an expired envelope", _as("peer", lambda ch: [ch.seal(_push(transit(BOB, origin=PEER, expires=wall_ms() - 1)))]), answered(PushResult(request=REQ, outcomes=("expired",))), _nothing_stored),
    Case(
        "a replayed Push",
        _as("peer", lambda ch: [ch.seal(_push(item := transit(BOB, origin=PEER, msg_id=bytes(16)), request=1)), ch.seal(_push(item))]),
        answered(PushResult(request=REQ, outcomes=("ok",))),
        lambda p: _bob_has(1, p),
        own_node=True,
    ),
    Case("a /client request on /federation", _as("peer", lambda ch: [ch.send(SendBatch(request=REQ, envelopes=(_to_bob(),)))]), fatal("unexpected_frame"), _nothing_stored),
    Case("a replayed record on /federation", _as("peer", lambda ch: [r := ch.send(Ping(request=1)), r]), fatal("decrypt_failed")),
]


# Running a case -------------------------------------------------------------------------------


def check(case: Case, seen: Seen) -> None:
    """The node did what the case expects, with codes the documentation lists."""
    codes, closes = documented_errors()
    assert seen.codes() <= codes, f"{case.name}: undocumented codes {seen.codes() - codes}"
    assert seen.close is None or seen.close in closes, f"{case.name}: undocumented close code {seen.close}"
    assert (seen.code, seen.close) == (case.expect.code, case.expect.close), (case.name, seen)
    if seen.close in (1002, 1008):
        assert seen.reason == seen.code, (case.name, seen)  # the close reason is the code
    expected = case.expect.answer
    if isinstance(expected, type):
        assert isinstance(seen.answer, expected), (case.name, seen)
    elif expected is not None:
        assert seen.answer == expected, (case.name, seen)


async def assert_serves(node: RunningNode) -> None:
    """A new device registers, sends to another new one, which receives and acknowledges."""
    tag = os.urandom(4).hex()
    sender, recipient = await node.enroll(f"sender{tag}"), await node.enroll(f"recipient{tag}")
    envelope = opaque_envelope(recipient.first)
    async with node.raw(sender.first) as conn:
        assert await conn.request(lambda n: SendBatch(request=n, envelopes=(envelope,))) == Accepted(request=1, stored=1)
    async with node.raw(recipient.first) as conn:
        [item] = await collect_until_drained(conn)
        assert (item.envelope.id, item.envelope.body) == (envelope.id, envelope.body)
        await conn.send(Ack(ids=(envelope.id,)))
        assert isinstance(await conn.request(lambda n: Ping(request=n)), Pong)
    assert await node.pending(recipient.address) == []
    assert node.alive


async def _probe(node: RunningNode) -> Probe:
    peer = new_key()
    await pin(node, PEER, fingerprint=peer.public.fingerprint)
    return Probe(
        url=node.url,
        fingerprint=node.fingerprint,
        node=node,
        alice=await node.enroll("alice"),
        bob=await node.enroll("bob"),
        peer=peer,
    )


@pytest.fixture(scope="module")
def shared_probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    """One node for the cases but the ``own_node`` ones (``shared_node``)."""
    with shared_node(tmp_path_factory, "catalogue") as node:
        yield trio.run(_probe, node)


@pytest.fixture
async def probe(shared_probe: Probe) -> Probe:
    """The module's node as each case expects it: bob's mailbox empty, no connection of an
    earlier case left."""
    assert shared_probe.node is not None
    with trio.fail_after(HANG_S):
        await shared_probe.node.settle()
    assert shared_probe.node.alive and await shared_probe.node.pending(BOB) == []
    return shared_probe


@pytest.fixture
async def own_probe(running: RunningNode) -> Probe:
    return await _probe(running)


async def _run(probe: Probe, case: Case) -> None:
    assert probe.node is not None
    with trio.fail_after(HANG_S):
        seen = await case.send(probe)
        check(case, seen)
        if case.after is not None:
            await case.after(probe)
        await assert_serves(probe.node)


@pytest.mark.parametrize("case", [c for c in CATALOGUE if not c.own_node], ids=[c.name for c in CATALOGUE if not c.own_node])
async def test_catalogue(probe: Probe, case: Case) -> None:
    await _run(probe, case)


@pytest.mark.parametrize("case", [c for c in CATALOGUE if c.own_node], ids=[c.name for c in CATALOGUE if c.own_node])
async def test_catalogue_on_its_own_node(own_probe: Probe, case: Case) -> None:
    await _run(own_probe, case)


def test_every_expected_code_is_documented() -> None:
    codes, closes = documented_errors()
    expected = {c.expect.code for c in CATALOGUE if c.expect.code}
    expected |= {o for c in CATALOGUE for o in getattr(c.expect.answer, "outcomes", ())}
    assert expected <= codes, expected - codes
    assert {c.expect.close for c in CATALOGUE if c.expect.close} <= closes


def test_the_docs_table_is_parsed() -> None:
    text = "## Errors\n\n| code | kind |\n|---|---|\n| `late` | request |\n\n| close | when |\n|---|---|\n| 1009 | big |\n\n## Next\n| `not_this` | x |\n"
    assert documented_errors(text) == ({"late"}, {1009})
    codes, closes = documented_errors()
    assert {"bad_input", "decrypt_failed", "unexpected_frame", "ok"} <= codes and {1002, 1008, 1009} <= closes
