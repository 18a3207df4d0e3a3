"""Bytes of unfinished incoming messages budgeted per actor (transport/admission.py,
transport/websocket.py), over real TCP: raw-socket attackers holding partial messages on several
connections are refused past their address's (or device's, account's, peer's) budget with a
close 1009 saying whose budget, before the message is buffered; the bytes come back when a
message is whole or its connection ends, abruptly too; other actors and whole messages are
untouched."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from sonet.transport.ws_errors import ConnectionClosed
from wsproto.events import BytesMessage

from sonet.transport.admission import Admission, ConnectionLimits
from sonet.transport.server import Connection, Listening, serve
from sonet.transport.websocket import MESSAGE_TOO_BIG, UpgradeRequest

from .test_ws_attacks import UPGRADE, Client, frame, header_announcing

HANG_S = 20  # hang guard, never a performance threshold
CAP = 4096  # the message cap of each connection
BUDGET = 10_000  # room for two connections' unfinished messages of 4000 bytes, not three
ADDRESS = ("address", "127.0.0.1")


def caps(**budgets: int) -> ConnectionLimits:
    return ConnectionLimits(
        handshake_timeout_s=3600,
        send_timeout_s=3600,
        pending_message_bytes=CAP,
        partial_bytes_per_address=budgets.get("address", BUDGET),
        partial_bytes_per_device=budgets.get("device", BUDGET),
        partial_bytes_per_account=budgets.get("account", BUDGET),
        partial_bytes_per_peer=budgets.get("peer", BUDGET),
    )


@asynccontextmanager
async def echo_server(limits: ConnectionLimits) -> AsyncIterator[Listening]:
    """A server that echoes every message; a request whose query names actors (``?device=d1&
    account=a``) has its connection charged to them once accepted, else to its address."""

    async def handler(request: UpgradeRequest, conn: Connection) -> None:
        actors = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.path).query))
        ws = await request.accept()
        conn.authenticated()
        if actors:
            ws.charge_partial_to(**actors)
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass
        finally:
            await ws.aclose()

    async with trio.open_nursery() as nursery:
        listening: Listening = await nursery.start(
            lambda task_status: serve(handler, "127.0.0.1", 0, plain_http_answer="ws only\n", caps=limits, task_status=task_status)
        )
        yield listening
        nursery.cancel_scope.cancel()


async def connect(listening: Listening, query: str = "") -> Client:
    request = UPGRADE.replace(b"GET /ws ", f"GET /ws{query} ".encode())
    client, _head = await Client.upgrade(listening.port, request)
    return client


async def until(condition: Callable[[], bool]) -> None:
    """Wait until the server got as far as ``condition`` (a hang guard bounds the test)."""
    while not condition():
        await trio.sleep(0.005)


async def start_message(client: Client, length: int = 4000, sent: int = 100) -> None:
    """Announce a ``length``-byte message and send its first ``sent`` bytes."""
    await client.stream.send_all(header_announcing(length) + b"x" * sent)


async def refusal(client: Client) -> tuple[int, str]:
    _seen, close = await client.until_close()
    assert close is not None, "closed without a close frame"
    return close.code, close.reason


async def echo_of(client: Client) -> bytes:
    """The next whole message the server sends ``client`` (its echo)."""
    data = b""
    while True:
        for event in client.proto.events():
            assert isinstance(event, BytesMessage), event
            data += event.data
            if event.message_finished:
                return data
        client.proto.receive_data(await client.stream.receive_some(65536))


async def test_partial_messages_on_several_connections_of_one_address_are_refused_past_its_budget() -> None:
    with trio.fail_after(HANG_S):
        async with echo_server(caps()) as listening:
            admission = listening.admission
            first, second, third = [await connect(listening) for _ in range(3)]
            await start_message(first)
            await start_message(second)
            await until(lambda: admission.held_by(*ADDRESS) == 8000)
            # the third announces 4000 more bytes: refused on the header, nothing of it buffered
            await start_message(third, sent=0)
            assert await refusal(third) == (
                MESSAGE_TOO_BIG,
                f"over the {BUDGET} bytes of unfinished messages this address may send at once; try again later",
            )
            assert admission.held_by(*ADDRESS) == 8000
            # the others are untouched: the first finishes its message and gets it back whole
            await first.stream.send_all(b"y" * 3900)
            assert await echo_of(first) == b"x" * 100 + b"y" * 3900
            await until(lambda: admission.held_by(*ADDRESS) == 4000)
            # its bytes came back: a new connection's message fits again
            fourth = await connect(listening)
            await fourth.stream.send_all(frame(b"z" * 4000))
            assert await echo_of(fourth) == b"z" * 4000
            # a connection that ends abruptly in the middle of a message gives its bytes back
            second.stream.socket.close()
            await until(lambda: admission.held_by(*ADDRESS) == 0)


async def test_a_message_in_fragments_is_charged_as_it_grows_and_refused_at_the_budget() -> None:
    with trio.fail_after(HANG_S):
        async with echo_server(caps()) as listening:
            holders = [await connect(listening) for _ in range(2)]
            fragmenter = await connect(listening)
            for holder in holders:
                await start_message(holder, length=4000, sent=4000 - 1)  # 3999 bytes came, 1 to come
            await until(lambda: listening.admission.held_by(*ADDRESS) == 8000)
            await fragmenter.stream.send_all(frame(b"f" * 1000, fin=False) + frame(b"f" * 1000, fin=False, opcode=0x0))
            await until(lambda: listening.admission.held_by(*ADDRESS) == BUDGET)
            await fragmenter.stream.send_all(frame(b"f", fin=False, opcode=0x0))
            code, reason = await refusal(fragmenter)
            assert code == MESSAGE_TOO_BIG and "this address" in reason
            await until(lambda: listening.admission.held_by(*ADDRESS) == 8000)
            # a held message finished is whole, and its bytes come back
            await holders[0].stream.send_all(b"y")
            assert await echo_of(holders[0]) == b"x" * 3999 + b"y"
            await until(lambda: listening.admission.held_by(*ADDRESS) == 4000)


async def test_a_device_and_its_account_have_budgets_of_their_own_apart_from_the_address() -> None:
    limits = caps(device=BUDGET, account=BUDGET + 2000)
    with trio.fail_after(HANG_S):
        async with echo_server(limits) as listening:
            held = listening.admission.held_by
            d1 = [await connect(listening, "?device=d1&account=alice") for _ in range(3)]
            d2 = await connect(listening, "?device=d2&account=alice")
            bob = await connect(listening, "?device=d3&account=bob")
            await start_message(d1[0])
            await start_message(d1[1])
            await until(lambda: held("device", "d1") == 8000)
            assert held(*ADDRESS) == 0  # charged to the device and its account instead
            await start_message(d1[2], sent=0)
            code, reason = await refusal(d1[2])
            assert code == MESSAGE_TOO_BIG and "this device may send" in reason
            # another device of the account has room of its own, until the account's is used
            await start_message(d2, length=2000)
            await until(lambda: held("account", "alice") == 10_000)
            await d2.stream.send_all(b"y" * 1900)
            assert await echo_of(d2) == b"x" * 100 + b"y" * 1900
            d2_again = await connect(listening, "?device=d2&account=alice")
            await start_message(d2_again, length=4001, sent=0)
            code, reason = await refusal(d2_again)
            assert code == MESSAGE_TOO_BIG and "this account's devices" in reason
            # another account's device is untouched
            await start_message(bob)
            await bob.stream.send_all(b"y" * 3900)
            assert await echo_of(bob) == b"x" * 100 + b"y" * 3900
            for client in d1[:2]:
                client.stream.socket.close()
            await until(lambda: held("device", "d1") == 0 and held("account", "alice") == 0)


async def test_bytes_held_move_with_the_connection_to_its_actors_and_back_on_release() -> None:
    admission = Admission(caps(peer=BUDGET))
    conn = admission.admit("10.0.0.1")
    admission.authenticated(conn)  # (until then charged to nobody: test_review7_budgets)
    assert conn.hold(6000) is None
    assert admission.held_by("address", "10.0.0.1") == 6000
    conn.charge_to(peer="node-key")
    assert admission.held_by("address", "10.0.0.1") == 0 and admission.held_by("peer", "node-key") == 6000
    other = admission.admit("10.0.0.2")
    admission.authenticated(other)
    other.charge_to(peer="node-key")
    assert other.hold(4001) is not None  # over the peer's budget, whatever the address
    assert other.hold(4000) is None
    with pytest.raises(ValueError):
        other.charge_to(nobody="x")
    admission.release(conn)
    admission.release(other)
    assert admission.held_by("peer", "node-key") == 0 and admission._held == {}


def test_budgets_smaller_than_a_handshake_message_are_refused() -> None:
    with pytest.raises(ValueError):
        ConnectionLimits(partial_bytes_per_device=100).check()
