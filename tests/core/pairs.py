"""Paired sans-I/O handshake machines for the core tests (no sockets, no clock).

:func:`run_handshake` plays an initiator and a responder against each other, delivering every
message through an optional tamper hook, and returns both ``HandshakeComplete`` events. Keys and
randomness are deterministic (seeded), so every run is reproducible (ARCHITECTURE §10.4).
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Callable
from typing import Any

from sonet.core.crypto import CryptoMode, CryptoPolicy, Rng, SigningKey
from sonet.core.handshake import NEED_DATA, Handshake, HandshakeComplete, PeerIdentified, Role, SessionKeys
from sonet.core.wire import decode_frame, encode_frame

__all__ = [
    "PROLOGUE",
    "HandshakeStalled",
    "Wire",
    "flip_bit",
    "identity",
    "make_initiator",
    "make_responder",
    "reencode",
    "rng",
    "run_handshake",
    "session_keys",
]

PROLOGUE = b"/client"

#: ``tamper(index, sender_role, data)`` -> the bytes to deliver instead, or None to drop the message.
#: ``index`` counts delivered handshake messages: 0 Hello1, 1 Hello2, 2 Auth3, 3 Done4.
Tamper = Callable[[int, Role, bytes], "bytes | None"]
#: ``decide(responder, event)``: called on PeerIdentified; default accepts.
Decide = Callable[[Handshake, PeerIdentified], None]


class HandshakeStalled(AssertionError):
    """Nothing left to deliver but the handshake did not complete on both sides."""


def rng(seed: object) -> Rng:
    """Deterministic randomness for pure code."""
    return random.Random(repr(seed)).randbytes


@functools.cache
def identity(mode: CryptoMode, name: str = "a") -> SigningKey:
    return SigningKey.generate(mode, rng(("identity", mode.value, name)))


def make_initiator(
    *,
    key: SigningKey | None = None,
    policy: CryptoPolicy | None = None,
    seed: object = "initiator",
    expected_peer: str | None = None,
    prologue: bytes = PROLOGUE,
) -> Handshake:
    return Handshake(
        Role.INITIATOR,
        identity=key or identity(CryptoMode.HYBRID, "initiator"),
        policy=policy or CryptoPolicy(),
        rng=rng(("hs", seed)),
        prologue=prologue,
        expected_peer=expected_peer,
    )


def make_responder(
    *,
    key: SigningKey | None = None,
    policy: CryptoPolicy | None = None,
    seed: object = "responder",
    expected_peer: str | None = None,
    prologue: bytes = PROLOGUE,
) -> Handshake:
    return Handshake(
        Role.RESPONDER,
        identity=key or identity(CryptoMode.HYBRID, "responder"),
        policy=policy or CryptoPolicy(),
        rng=rng(("hs", seed)),
        prologue=prologue,
        expected_peer=expected_peer,
    )


def _accept(responder: Handshake, event: PeerIdentified) -> None:
    responder.accept()


Wire = list[tuple[Role, bytes]]


def run_handshake(
    initiator: Handshake,
    responder: Handshake,
    *,
    tamper: Tamper | None = None,
    decide: Decide = _accept,
    wire: Wire | None = None,
    events: list[Any] | None = None,
) -> tuple[HandshakeComplete, HandshakeComplete]:
    """Deliver messages both ways until both sides complete; returns (initiator's, responder's)
    HandshakeComplete. A ProtocolError from either side propagates unchanged (the machines keep
    their state for inspection). ``wire`` collects every delivered (sender, bytes) pair, after
    tampering; ``events`` collects every event either side produced, in order."""
    done: dict[Role, HandshakeComplete] = {}
    log = [] if events is None else events
    index = 0
    sides = {Role.INITIATOR: (initiator, responder), Role.RESPONDER: (responder, initiator)}
    progressed = True
    while progressed and len(done) < 2:
        progressed = False
        for role in (Role.INITIATOR, Role.RESPONDER):
            sender, receiver = sides[role]
            for data in sender.data_to_send():
                progressed = True
                n, index = index, index + 1
                if tamper is not None:
                    replaced = tamper(n, role, data)
                    if replaced is None:
                        continue
                    data = replaced
                if wire is not None:
                    wire.append((role, data))
                receiver.receive_data(data)
                while (event := receiver.next_event()) is not NEED_DATA:
                    log.append(event)
                    if isinstance(event, PeerIdentified):
                        decide(receiver, event)
                    elif isinstance(event, HandshakeComplete):
                        done[receiver.role] = event
            # The responder completes inside accept(), so collect its events here as well.
            while (event := sender.next_event()) is not NEED_DATA:
                log.append(event)
                if isinstance(event, HandshakeComplete):
                    done[sender.role] = event
    if len(done) < 2:
        raise HandshakeStalled(f"handshake stalled; completed: {sorted(r.value for r in done)}")
    return done[Role.INITIATOR], done[Role.RESPONDER]


@functools.cache
def session_keys(mode: CryptoMode = CryptoMode.HYBRID, seed: object = 0) -> tuple[SessionKeys, SessionKeys]:
    """(initiator's, responder's) SessionKeys of one successful handshake in ``mode``."""
    policy = CryptoPolicy(mode, mode)
    a, b = run_handshake(
        make_initiator(key=identity(mode, "initiator"), policy=policy, seed=("keys", seed, "i")),
        make_responder(key=identity(mode, "responder"), policy=policy, seed=("keys", seed, "r")),
    )
    return a.keys, b.keys


def flip_bit(data: bytes, bit: int) -> bytes:
    """``data`` with bit number ``bit`` (0 = least significant bit of byte 0) inverted."""
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def reencode(data: bytes, **changes: Any) -> bytes:
    """Decode a frame, replace some fields, encode it again (a man-in-the-middle rewrite)."""
    return encode_frame(dataclasses.replace(decode_frame(data), **changes))
