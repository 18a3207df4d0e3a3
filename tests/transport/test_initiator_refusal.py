"""``run_initiator`` when the responder refuses: the refusal is what the caller sees, even when
the responder has closed before the initiator's answer to it could be sent (found with a node in
another thread: its close overtook that answer, and the failed send hid the refusal)."""

from __future__ import annotations

import pytest

from sonet.core.crypto import CryptoMode, CryptoPolicy
from sonet.core.errors import RemoteProtocolError
from sonet.core.handshake import HandshakeError
from sonet.core.wire import decode_frame, encode_frame
from sonet.transport.handshake import run_initiator
from sonet.transport.ws_errors import CloseReason, ConnectionClosed

from ..core.pairs import identity, make_initiator

HYBRID = CryptoPolicy(CryptoMode.HYBRID, CryptoMode.HYBRID)
REFUSAL = encode_frame(HandshakeError(code="unknown_peer", message="no peer is pinned to this key"))
CLOSED = ConnectionClosed(CloseReason(1008, "unknown_peer"))


class Transport:
    """Gives the initiator ``incoming`` in turn; its sends after the first fail once ``closed``."""

    def __init__(self, *incoming: bytes, closed: bool) -> None:
        self.incoming = list(incoming)
        self.closed = closed
        self.sent: list[bytes] = []

    async def send(self, data: bytes) -> None:
        if self.sent and self.closed:
            raise CLOSED
        self.sent.append(data)

    async def receive(self) -> bytes:
        return self.incoming.pop(0)


def initiator():  # noqa: ANN201 - a Handshake
    return make_initiator(key=identity(CryptoMode.HYBRID, "initiator"), policy=HYBRID, seed=("i", 0))


@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed before the answer"])
async def test_a_refusal_is_what_the_initiator_raises(closed: bool) -> None:
    link = Transport(REFUSAL, closed=closed)
    with pytest.raises(RemoteProtocolError, match="no peer is pinned to this key") as refusal:
        await run_initiator(initiator(), send=link.send, receive=link.receive, peer="node")
    assert refusal.value.code == "unknown_peer"
    if not closed:  # the answer to the refusal still travels while it can
        hello, answer = link.sent
        assert decode_frame(answer) == HandshakeError(code="unknown_peer", message="peer refused the handshake: no peer is pinned to this key")


async def test_a_closed_connection_is_still_an_error_when_nothing_was_refused() -> None:
    """A protocol error the initiator finds itself goes before the failed send of its answer
    too (it was hidden the same way); a send that fails with nothing refused is the closed
    connection's error, as before."""
    responder_hello = b"\x00" * 8  # malformed: refused by the initiator itself (a protocol error too)
    link = Transport(responder_hello, closed=True)
    with pytest.raises(RemoteProtocolError):
        await run_initiator(initiator(), send=link.send, receive=link.receive, peer="node")
    link = Transport(closed=True)
    link.sent.append(b"already sent")  # the Hello1 itself cannot go: the closed connection says so
    with pytest.raises(ConnectionClosed):
        await run_initiator(initiator(), send=link.send, receive=link.receive, peer="node")
