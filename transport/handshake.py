"""Pump the sans-I/O handshake (core/handshake.py) over a message transport, in either role.

The initiator side takes the transport as two async callables, so devices, dialling nodes,
tests and benchmarks all drive it the same way; the responder side serves one accepted
WebSocket for the node and decides about the identified initiator through ``admit``. A
responder given a ``HandshakeGuard`` (core/handshake_guard.py, one per node) screens each Hello1
with it before any public-key work: replays and addresses over their share are refused, and
under load the initiator is sent a cookie first (``run_initiator`` answers it by itself).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Awaitable, Callable

import trio
from .ws_errors import ConnectionClosed

from sonet.core import limits
from sonet.core.crypto import CryptoPolicy, SigningKey
from sonet.core.errors import ProtocolError, RemoteProtocolError
from sonet.core.handshake import Handshake, HandshakeComplete, Hello1, PeerIdentified, Role
from sonet.core.handshake_guard import HandshakeGuard

from . import events
from .websocket import WebSocket

__all__ = ["run_initiator", "respond", "Admit", "admit_everyone", "POLICY_VIOLATION", "PROTOCOL_ERROR", "PEER_REFUSED"]

log = logging.getLogger("sonet.transport")

#: WebSocket close codes: a refusal (its code as the reason), a handshake that broke the protocol
POLICY_VIOLATION = 1008
PROTOCOL_ERROR = 1002

#: core/handshake.py's wording of the other side's HandshakeError (it refused or gave up): its
#: message follows
PEER_REFUSED = re.compile(r"peer refused the handshake(?: \(.*?\))?: (.*)", re.S)

#: decides about the authenticated initiator: None admits, ``(code, message)`` refuses
Admit = Callable[[PeerIdentified], Awaitable[tuple[str, str] | None]]


async def admit_everyone(event: PeerIdentified) -> tuple[str, str] | None:
    return None


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

    async def flush() -> None:
        for out in hs.data_to_send():
            await send(out)

    await flush()
    while True:
        message = await receive()
        if isinstance(message, str):
            raise RemoteProtocolError(f"{peer} sent a text message during the handshake")
        try:
            hs.receive_data(message)
        except ProtocolError:
            # Its answer is flushed all the same (an initiator's rejection travels that way), but
            # the other side may have closed already (it refused us): the error to tell is the
            # protocol's, whatever the flush met (``send`` is the caller's: its transport's own
            # closed-connection error, a broken stream).
            with contextlib.suppress(Exception):
                await flush()
            raise
        await flush()
        event = hs.next_event()
        if isinstance(event, HandshakeComplete):
            return event


#: refusals of the guard: expected in numbers during a flood, so not one log line each
_GUARD_CODES = frozenset({"replayed", "rate_limited"})


async def respond(
    ws: WebSocket,
    *,
    identity: SigningKey,
    policy: CryptoPolicy,
    prologue: bytes,
    admit: Admit = admit_everyone,
    guard: HandshakeGuard | None = None,
    address: str = "",
    ended: Callable[[str], object] = lambda code: None,
) -> HandshakeComplete | None:
    """Run the responder side under the handshake deadline; None if the initiator failed, was
    refused or was too slow (the WebSocket is then closed with the reason, and ``ended(code)``
    told why: the refusal's code, the failure's). ``guard`` screens the Hello1 of an
    initiator at ``address`` (its IP, or IPv6 /64: what it is limited by)."""
    screened = False

    def screen(hello: Hello1) -> bytes | None:
        nonlocal screened
        assert guard is not None
        cookie = guard.screen(address.encode(), hello, _now_ms())
        screened = cookie is None
        return cookie

    hs = Handshake(
        Role.RESPONDER, identity=identity, policy=policy, rng=os.urandom, prologue=prologue, screen=screen if guard else None
    )
    try:
        return await _respond(ws, hs, admit, address, ended)
    finally:
        if screened:
            assert guard is not None
            guard.release()


def _now_ms() -> int:
    return int(trio.current_time() * 1000)


async def _respond(ws: WebSocket, hs: Handshake, admit: Admit, address: str, ended: Callable[[str], object]) -> HandshakeComplete | None:
    with trio.move_on_after(limits.HANDSHAKE_DEADLINE_S):
        try:
            while True:
                message = await ws.get_message()
                if isinstance(message, str):
                    raise RemoteProtocolError("handshake messages must be binary")
                try:
                    hs.receive_data(message)
                finally:
                    for out in hs.data_to_send():
                        await ws.send_message(out)
                event = hs.next_event()
                if isinstance(event, PeerIdentified):
                    refusal = await admit(event)
                    if refusal is None:
                        hs.accept()
                    else:
                        hs.reject(*refusal)
                        ended(refusal[0])
                    for out in hs.data_to_send():
                        await ws.send_message(out)
                    if refusal is not None:
                        await ws.aclose(code=POLICY_VIOLATION, reason=refusal[0])
                        return None
                    done = hs.next_event()
                    if not isinstance(done, HandshakeComplete):  # accept() completes it: a bug
                        raise RuntimeError(f"handshake did not complete after accept(): {done!r}")
                    return done
        except ProtocolError as exc:
            words = PEER_REFUSED.fullmatch(str(exc)) if isinstance(exc, RemoteProtocolError) else None
            if words is not None:
                # the initiator refused this node (its words: "peer" in them is this node)
                _refused_by_initiator(address, exc.code, words[1])
                ended("refused_by_initiator")
            else:
                log.log(logging.DEBUG if exc.code in _GUARD_CODES else logging.INFO, "handshake failed: %s", exc)
                events.emit("handshake_refused", address=address, code=exc.code)
                ended(exc.code)
            await ws.aclose(code=PROTOCOL_ERROR, reason=exc.code)
            return None
        except ConnectionClosed:
            return None
    events.emit("handshake_refused", address=address, code="handshake_timeout")
    ended("handshake_timeout")
    await ws.aclose(code=POLICY_VIOLATION, reason="handshake timeout")
    return None


def _refused_by_initiator(address: str, code: str, words: str) -> None:
    """The side that connected ended the handshake itself: this node refused nothing. With
    ``wrong_identity`` it checked this node's key against its pin and found another one."""
    why = ": it has another key pinned for this node" if code == "wrong_identity" else ""
    log.info("the initiator at %s refused the handshake (%s)%s; it said: %s", address or "?", code, why, words)
    events.emit("refused_by_initiator", address=address, code=code)
