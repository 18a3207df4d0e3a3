"""sonet.transport.SecureSocket on a fake WebSocket: ``fail`` is the connection's last word
(an ErrorFrame with request 0, even after the peer's record broke the receiving direction,
then a close with 1008 and the code), and a record sealed but never sent stops all sending."""

from __future__ import annotations

import pytest
import trio

from sonet.core.client_api import ErrorFrame, Ping
from sonet.core.errors import LocalProtocolError, RemoteProtocolError

from .fake_ws import pair

HANG_S = 20  # hang guard, never a performance threshold


async def test_fail_after_a_broken_record_still_tells_the_peer_why() -> None:
    sock, ws = pair()
    with trio.fail_after(HANG_S):
        await ws.push_raw(b"\x01" * 40)  # does not decrypt
        with pytest.raises(RemoteProtocolError) as info:
            await sock.receive()
        await sock.fail(info.value)
        assert await ws.sent.receive() == ErrorFrame(request=0, code="decrypt_failed", message="decryption failed")
    assert ws.closed is not None and (ws.closed.code, ws.closed.reason) == (1008, "decrypt_failed")
    assert sock.closed
    await sock.fail(RemoteProtocolError("again"))  # closed already: nothing more is sent
    assert ws.sent.statistics().current_buffer_used == 0


async def test_a_long_message_is_cut_in_the_error_frame() -> None:
    sock, ws = pair()
    with trio.fail_after(HANG_S):
        await sock.fail(RemoteProtocolError("x" * 1000, code="bad_input"))
        error = await ws.sent.receive()
    assert isinstance(error, ErrorFrame) and error.message == "x" * 300


async def test_a_record_sealed_but_not_sent_stops_all_sending() -> None:
    sock, ws = pair()
    with trio.fail_after(HANG_S):
        ws.stall = True
        with trio.move_on_after(0.05):  # cancelled while the sealed record is on its way
            await sock.send(Ping(request=1))
        ws.stall = False
        assert sock.send_broken == "a send was interrupted"
        with pytest.raises(LocalProtocolError, match="cannot send any more: a send was interrupted; reconnect"):
            await sock.send(Ping(request=2))
        # the last word is skipped (the peer could not open it), the close is not
        await sock.fail(RemoteProtocolError("bye", code="bad_input"))
    assert ws.sent.statistics().current_buffer_used == 0
    assert ws.closed is not None and ws.closed.reason == "bad_input"
