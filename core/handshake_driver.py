"""Drive the initiator side of the handshake over any message transport.

The handshake itself stays sans-I/O (core/handshake.py); this is the one loop that pumps it,
shared by devices (client/connection.py) and dialling nodes (federation/link.py). The transport
is injected as two async callables, so core still imports no I/O library.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .errors import RemoteProtocolError
from .handshake import Handshake, HandshakeComplete

__all__ = ["run_initiator"]


async def run_initiator(
    hs: Handshake,
    *,
    send: Callable[[bytes], Awaitable[object]],
    receive: Callable[[], Awaitable[bytes | str]],
    peer: str,
) -> HandshakeComplete:
    """Send what ``hs`` queued, feed it each message ``receive()`` returns (flushing its
    answers even when a message is refused: a rejection travels that way) until it completes.
    ``peer`` names the other side in errors ("node", "peer")."""
    for out in hs.data_to_send():
        await send(out)
    while True:
        message = await receive()
        if isinstance(message, str):
            raise RemoteProtocolError(f"{peer} sent a text message during the handshake")
        try:
            hs.receive_data(message)
        finally:
            for out in hs.data_to_send():
                await send(out)
        event = hs.next_event()
        if isinstance(event, HandshakeComplete):
            return event
