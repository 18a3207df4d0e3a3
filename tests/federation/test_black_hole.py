"""A peer (or node) that accepts the TCP connection and then never answers the WebSocket
upgrade: the dial must give up after the handshake deadline with a one-line error, not hang
(trio-websocket's own connect_timeout does not cover this case)."""

from __future__ import annotations

import os

import pytest
import trio

from sonet.client.connection import ConnectError, connect
from sonet.core import limits
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.federation.link import DialError, dial_peer

DEADLINE_S = 0.5
HANG_GUARD_S = 10.0  # far above the deadline: only a hang trips it


async def _black_hole(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Accept connections, read and discard everything, never answer, never close."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])

    async def swallow(stream: trio.SocketStream) -> None:
        while await stream.receive_some(65536):
            pass

    await trio.serve_listeners(swallow, listeners)


@pytest.fixture
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "HANDSHAKE_DEADLINE_S", DEADLINE_S)


async def test_a_peer_dial_into_a_black_hole_gives_up(short_deadline: None) -> None:
    key = SigningKey.generate(CryptoMode.HYBRID, os.urandom)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_black_hole)
        with trio.fail_after(HANG_GUARD_S):
            with pytest.raises(DialError, match="did not complete the handshake in time"):
                async with dial_peer(f"ws://127.0.0.1:{port}", identity=key, fingerprint=key.public.fingerprint, name="alpha.example"):
                    pass
        nursery.cancel_scope.cancel()


async def test_a_device_connecting_into_a_black_hole_gives_up(short_deadline: None) -> None:
    key = SigningKey.generate(CryptoMode.HYBRID, os.urandom)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_black_hole)
        with trio.fail_after(HANG_GUARD_S):
            with pytest.raises(ConnectError, match="did not complete the handshake in time"):
                async with connect(f"ws://127.0.0.1:{port}", identity=key, node_fingerprint=None):
                    pass
        nursery.cancel_scope.cancel()
