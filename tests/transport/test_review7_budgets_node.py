"""Review of the budgets of bytes of unfinished messages on a real (in-process) node (round 7):
the ways a node's own connections end while a partial message is held - a device registering
meanwhile (ClientSession.become moves the charge), the operator disabling the account (the
node ends the session), a federation link reset - each leave the ledger empty, and the same
device, account or peer then holds a whole budget's message again. Nothing is logged with a
traceback. Raw frames are written under the secure channel: a message that never completes is
never decrypted, only held."""

from __future__ import annotations

import logging
import socket as stdlib_socket
import struct

import pytest
import trio

from sonet.core import limits
from sonet.core.client_api import Ping, Pong, Register, Registered
from sonet.core.invite import parse_invite
from sonet.node import admin
from sonet.node.app import now_ms
from sonet.transport.admission import Admission
from tests.federation.net import peer_link, pin
from tests.node.conftest import HANG_S, RunningNode, StartNode
from tests.node.kit import Account, Member, NodeError

from .echo import new_key
from .test_ws_attacks import header_announcing

RECORD = limits.MAX_RECORD_BYTES
#: a message a connection without an account may send (a Register's cap)
PARTIAL = limits.MAX_UNREGISTERED_RECORD_BYTES - 100


def admission_of(node: RunningNode) -> Admission:
    assert node.node.listening is not None
    return node.node.listening.admission


def socket_under(stream: object) -> stdlib_socket.socket:
    """The TCP socket under a dialled WebSocket's stream (send deadline, TLS, ...)."""
    while not isinstance(stream, trio.SocketStream):
        stream = stream._stream  # type: ignore[attr-defined]
    return stream.socket  # type: ignore[return-value]


def reset(stream: object) -> None:
    sock = socket_under(stream)
    sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def until_empty(admission: Admission) -> None:
    while admission._held:
        await trio.sleep(0.005)


async def until_held(admission: Admission, kind: str, key: str, nbytes: int) -> None:
    while admission.held_by(kind, key) != nbytes:
        await trio.sleep(0.005)


@pytest.fixture(autouse=True)
def no_traceback(caplog: pytest.LogCaptureFixture) -> object:
    caplog.set_level(logging.INFO)
    yield
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text


async def test_a_partial_message_held_while_its_device_registers_moves_with_it_and_comes_back(start_node: StartNode) -> None:
    node = await start_node()
    admission = admission_of(node)
    account = Account(address=f"carol@{node.config.name}")
    member = Member.new(account.address)
    secret = parse_invite(await node.mint_invite())[1]
    with trio.fail_after(HANG_S):
        async with node.raw(member) as conn:
            ws = conn._sock._ws

            built = trio.Event()

            def register(n: int) -> Register:
                built.set()  # (its turn on the socket came: the socket's send lock is held)
                return Register(
                    request=n, user="carol", invite=secret, record=member.record, account_identity=account.identity_bytes,
                    device_list=account.sign_list([member.fingerprint], version=1), keys=member.keys,
                )  # fmt: skip

            async def registered() -> None:
                assert isinstance(await conn.request(register), Registered)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(registered)
                await built.wait()
                async with conn._sock._send_lock:  # the Register went whole: the next message begins
                    await ws._stream.send_all(header_announcing(PARTIAL) + bytes(100))
            # registered: what it holds is its device's and its account's, not its address's
            await until_held(admission, "device", member.fingerprint, PARTIAL)
            assert admission.held_by("account", account.address) == PARTIAL
            assert admission.held_by("address", "127.0.0.1") == 0
            reset(ws._stream)
            await until_empty(admission)
        async with node.raw(member) as again:
            assert await again.request(lambda n: Ping(request=n)) == Pong(request=1)
            await again._sock._ws._stream.send_all(header_announcing(RECORD) + bytes(100))
            await until_held(admission, "device", member.fingerprint, RECORD)
        await until_empty(admission)


async def test_a_session_the_node_ends_while_a_message_is_held_gives_its_bytes_back(running: RunningNode) -> None:
    admission = admission_of(running)
    with trio.fail_after(HANG_S):
        alice = await running.enroll("alice")
        async with running.raw(alice.first) as conn:
            await conn._sock._ws._stream.send_all(header_announcing(RECORD - 100) + bytes(100))
            await until_held(admission, "account", alice.address, RECORD - 100)
            async with running.store() as store:
                await admin.disable_account(store, alice.address, now=now_ms())
            await conn.closed.wait()  # the admin watcher ends the session
            assert isinstance(conn.error, NodeError) and conn.error.code == "account_disabled", conn.error
            await until_empty(admission)
        async with running.store() as store:
            await admin.enable_account(store, alice.address, now=now_ms())
        async with running.raw(alice.first) as fresh:
            assert await fresh.request(lambda n: Ping(request=n)) == Pong(request=1)
            await fresh._sock._ws._stream.send_all(header_announcing(RECORD) + bytes(100))
            await until_held(admission, "device", alice.first.fingerprint, RECORD)
        await until_empty(admission)


async def test_a_federation_link_reset_mid_message_gives_the_peers_bytes_back(start_node: StartNode) -> None:
    node = await start_node(partial_bytes_per_peer=RECORD)
    admission = admission_of(node)
    key = new_key()
    peer = key.public.fingerprint
    await pin(node, "gamma.example", fingerprint=key.public.fingerprint)
    with trio.fail_after(HANG_S):
        async with peer_link(node, key, "gamma.example") as first:
            await first._ws._stream.send_all(header_announcing(RECORD - 100) + bytes(100))
            await until_held(admission, "peer", peer, RECORD - 100)
            reset(first._ws._stream)
            await until_empty(admission)
        async with peer_link(node, key, "gamma.example") as second:  # the whole budget again
            await second._ws._stream.send_all(header_announcing(RECORD) + bytes(100))
            await until_held(admission, "peer", peer, RECORD)
        await until_empty(admission)


async def test_a_refusal_over_a_devices_budget_is_a_close_with_its_reason_and_no_traceback(start_node: StartNode) -> None:
    node = await start_node(partial_bytes_per_device=RECORD)
    admission = admission_of(node)
    with trio.fail_after(HANG_S):
        alice = await node.enroll("alice")
        async with node.raw(alice.first) as holder, node.raw(alice.first) as late:
            await holder._sock._ws._stream.send_all(header_announcing(RECORD - 100) + bytes(100))
            await until_held(admission, "device", alice.first.fingerprint, RECORD - 100)
            await late._sock._ws._stream.send_all(header_announcing(200))
            await late.closed.wait()
            reason = late.close_reason
            assert reason is not None and reason.code == 1009
            assert reason.reason == f"over the {RECORD} bytes of unfinished messages this device may send at once; try again later"
            assert admission._held == {("device", alice.first.fingerprint): RECORD - 100, ("account", alice.address): RECORD - 100}
            reset(holder._sock._ws._stream)
            await until_empty(admission)
