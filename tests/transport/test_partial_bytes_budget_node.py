"""The budgets of bytes of unfinished messages on a real (in-process) node: a registered device's
connections share its budget and its account's devices the account's (node/client_session.py
charges them once the device is known), a peer's links the peer's (node/app.py), a connection
without an account its address's; over budget a message is refused with close 1009 saying
whose budget, other devices and accounts are untouched, and bytes come back when a connection
ends abruptly. Raw frames are written under the secure channel: a message that never completes
is never decrypted, only held."""

from __future__ import annotations

import pytest
import trio
from sonet.transport.ws_errors import ConnectionClosed

from sonet.core import limits
from sonet.core.client_api import Ping, Pong
from sonet.transport.websocket import MESSAGE_TOO_BIG
from tests.federation.net import peer_link, pin
from tests.node.conftest import HANG_S, StartNode
from tests.node.kit import RawConnection

from .echo import new_key
from .test_ws_attacks import header_announcing

RECORD = limits.MAX_RECORD_BYTES


async def start_message(conn: RawConnection, length: int, sent: int = 100) -> None:
    """Announce a ``length``-byte WebSocket message on ``conn`` and send its first bytes."""
    await conn._sock._ws._stream.send_all(header_announcing(length) + bytes(sent))


async def refused_with(conn: RawConnection) -> str:
    await conn.closed.wait()
    reason = conn.close_reason
    assert reason is not None and reason.code == MESSAGE_TOO_BIG, reason
    return str(reason.reason)


async def test_a_devices_connections_and_an_accounts_devices_share_their_budgets(start_node: StartNode) -> None:
    node = await start_node(partial_bytes_per_device=RECORD, partial_bytes_per_account=RECORD + RECORD // 2)
    with trio.fail_after(HANG_S):
        alice = await node.enroll("alice")
        second = await node.link(alice)
        bob = await node.enroll("bob")
        assert node.node.listening is not None
        held = node.node.listening.admission.held_by

        async def until_held(kind: str, key: str, nbytes: int) -> None:
            while held(kind, key) != nbytes:
                await trio.sleep(0.005)

        async with node.raw(alice.first) as first, node.raw(alice.first) as again, node.raw(second) as other, node.raw(bob.first) as bobs:
            await start_message(first, RECORD - 100)
            await until_held("device", alice.first.fingerprint, RECORD - 100)
            await until_held("account", alice.address, RECORD - 100)
            # the same device's other connection: over the device's budget
            await start_message(again, 200, sent=0)
            assert "this device may send at once" in await refused_with(again)
            # another device of the account: within its own budget, over the account's
            await start_message(other, RECORD // 2 + 200, sent=0)
            assert "this account's devices may send at once" in await refused_with(other)
            # another account is untouched, and so is the connection holding the bytes
            await start_message(bobs, RECORD - 100)
            await until_held("account", bob.address, RECORD - 100)
            # an abrupt end gives the bytes back
            first._sock._ws._stream._stream.socket.close()
            await until_held("account", alice.address, 0)
        async with node.raw(second) as other:
            await start_message(other, RECORD // 2 + 200)
            await until_held("account", alice.address, RECORD // 2 + 200)


async def test_a_connection_without_an_account_is_charged_to_its_address(start_node: StartNode) -> None:
    node = await start_node(partial_bytes_per_address=limits.MAX_UNREGISTERED_RECORD_BYTES)
    with trio.fail_after(HANG_S):
        alice = await node.enroll("alice")
        assert node.node.listening is not None
        held = node.node.listening.admission.held_by
        async with node.raw(new_key()) as stranger, node.raw(new_key()) as another, node.raw(alice.first) as device:
            await start_message(stranger, limits.MAX_UNREGISTERED_RECORD_BYTES - 100)
            while held("address", "127.0.0.1") != limits.MAX_UNREGISTERED_RECORD_BYTES - 100:
                await trio.sleep(0.005)
            await start_message(another, 200, sent=0)
            assert "this address may send at once" in await refused_with(another)
            # a registered device on the same address has budgets of its own
            assert await device.request(lambda n: Ping(request=n)) == Pong(request=1)
            await start_message(device, RECORD - 100)
            while held("device", alice.first.fingerprint) != RECORD - 100:
                await trio.sleep(0.005)


async def test_a_peers_links_share_the_peers_budget(start_node: StartNode) -> None:
    node = await start_node(partial_bytes_per_peer=RECORD)
    key = new_key()
    await pin(node, "gamma.example", fingerprint=key.public.fingerprint)
    assert node.node.listening is not None
    held = node.node.listening.admission.held_by
    with trio.fail_after(HANG_S):
        async with peer_link(node, key, "gamma.example") as first, peer_link(node, key, "gamma.example") as second:
            await first._ws._stream.send_all(header_announcing(RECORD - 100) + bytes(100))
            while held("peer", key.public.fingerprint) != RECORD - 100:
                await trio.sleep(0.005)
            await second._ws._stream.send_all(header_announcing(200))
            with pytest.raises(ConnectionClosed) as refused:
                await second.receive()
            reason = refused.value.reason
            assert reason is not None and reason.code == MESSAGE_TOO_BIG
            assert "a peer node may send at once" in str(reason.reason)
