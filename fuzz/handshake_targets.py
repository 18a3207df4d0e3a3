"""Targets for the secure-channel handshake, driven through the sans-I/O ``Handshake`` objects.

Each of the four messages is parsed by the side that receives it, in the state where it
arrives: Hello1 and Auth3 by a responder, Hello2 and Done4 by an initiator (a HandshakeError
can come in any of them). The runs are deterministic (fixed keys, a fixed randomness source),
so the recorded Hello1 and Hello2 are valid seeds for a fresh machine; Auth3 and Done4 depend
on a randomised ML-DSA signature, so their seeds are only well-formed.

Two more targets fuzz what only a peer that completes the key exchange can send: the identity
box's plaintext, sealed under the right handshake key (a malicious node answering a device, a
malicious device connecting to a node).

The property beyond "only RemoteProtocolError": a refused message leaves exactly one
HandshakeError to send and a machine that refuses all further input.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sonet.core import canonical
from sonet.core.crypto import Aead, CryptoMode
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.handshake import (
    Auth3,
    Handshake,
    HandshakeComplete,
    HandshakeError,
    Hello2,
    PeerIdentified,
    Role,
)
from sonet.core.wire import Frame, decode_frame, encode_frame

from . import material as m
from .target import Finding, Target, register

__all__ = ["Recording", "recording", "initiator", "responder"]

_PROLOGUE = b"/client"


class _Forger(Handshake):
    """A handshake party that boxes ``body`` as its identity instead of a real one."""

    def __init__(self, role: Role, body: bytes, **kwargs: Any) -> None:
        self._forged = body
        super().__init__(role, **kwargs)

    def _sign_identity(self, role: Role) -> bytes:
        return Aead(self._hs_key(role)).seal(bytes(12), self._forged, self._th)


def initiator(*, forge: bytes | None = None) -> Handshake:
    """A device's side, pinned to the node; the same Hello1 every time."""
    kwargs = dict(identity=m.device_key(), policy=m.POLICY, rng=m.rng("hs-initiator"), prologue=_PROLOGUE)
    pin = m.node_key().public.fingerprint
    if forge is not None:
        return _Forger(Role.INITIATOR, forge, expected_peer=pin, **kwargs)
    return Handshake(Role.INITIATOR, expected_peer=pin, **kwargs)


def responder(*, forge: bytes | None = None) -> Handshake:
    """The node's side."""
    kwargs = dict(identity=m.node_key(), policy=m.POLICY, rng=m.rng("hs-responder"), prologue=_PROLOGUE)
    return Handshake(Role.RESPONDER, **kwargs) if forge is None else _Forger(Role.RESPONDER, forge, **kwargs)


@dataclass(frozen=True)
class Recording:
    hello1: bytes
    hello2: bytes
    auth3: bytes
    done4: bytes


def _one(hs: Handshake) -> bytes:
    [message] = hs.data_to_send()
    return message


@functools.cache
def recording() -> Recording:
    """The messages of one complete handshake."""
    i, r = initiator(), responder()
    hello1 = _one(i)
    r.receive_data(hello1)
    hello2 = _one(r)
    i.receive_data(hello2)
    auth3 = _one(i)
    r.receive_data(auth3)
    assert isinstance(r.next_event(), PeerIdentified)
    r.accept()
    done4 = _one(r)
    i.receive_data(done4)
    assert isinstance(i.next_event(), HandshakeComplete)
    return Recording(hello1, hello2, auth3, done4)


def _refusal() -> bytes:
    return encode_frame(HandshakeError(code="crypto_mode_refused", message="no"))


def _feed(hs: Handshake, data: bytes) -> None:
    """``hs.receive_data(data)``; a refusal must leave a dead machine that says why."""
    try:
        hs.receive_data(data)
    except RemoteProtocolError:
        _check_dead(hs, data)
        raise


def _queued(hs: Handshake) -> list[Frame]:
    """What ``hs`` queued for the peer (a message that does not decode is a finding, not
    the refusal of the input)."""
    try:
        return [decode_frame(out) for out in hs.data_to_send()]
    except RemoteProtocolError as exc:
        raise Finding(f"the handshake queued a message that does not decode: {exc}") from None


def _check_dead(hs: Handshake, data: bytes) -> None:
    sent = _queued(hs)
    if len(sent) != 1 or not isinstance(sent[0], HandshakeError):
        raise Finding(f"a refused handshake queued {sent} instead of one HandshakeError")
    try:
        hs.receive_data(data)
    except LocalProtocolError:
        return
    except Exception as exc:
        raise Finding(f"a failed handshake raised {type(exc).__name__} instead of refusing use") from exc
    raise Finding("a failed handshake accepted more input")


def _answer(hs: Handshake, expected: type[Frame]) -> Frame:
    """The one message ``hs`` queued after accepting an input, which must be ``expected``."""
    sent = _queued(hs)
    if len(sent) != 1 or not isinstance(sent[0], expected):
        raise Finding(f"after an accepted message the machine queued {sent}, not one {expected.__name__}")
    return sent[0]


def _event(hs: Handshake, expected: type) -> Any:
    event = hs.next_event()
    if not isinstance(event, expected):
        raise Finding(f"after an accepted message the event was {event!r}, not {expected.__name__}")
    return event


def _hello1(data: bytes) -> Frame:
    hs = responder()
    _feed(hs, data)
    return _answer(hs, Hello2)


def _hello2(data: bytes) -> Frame:
    hs = initiator()
    hs.data_to_send()
    _feed(hs, data)
    return _answer(hs, Auth3)


def _auth3(data: bytes) -> PeerIdentified:
    hs = responder()
    hs.receive_data(recording().hello1)
    hs.data_to_send()
    _feed(hs, data)
    return _event(hs, PeerIdentified)


def _done4(data: bytes) -> HandshakeComplete:
    hs = initiator()
    hs.data_to_send()
    hs.receive_data(recording().hello2)
    hs.data_to_send()
    _feed(hs, data)
    return _event(hs, HandshakeComplete)


def _responder_identity(data: bytes) -> Frame:
    """A malicious node: Hello2's identity box holds ``data``."""
    i, r = initiator(), responder(forge=data)
    r.receive_data(_one(i))
    _feed(i, _one(r))
    return _answer(i, Auth3)


def _initiator_identity(data: bytes) -> PeerIdentified:
    """A malicious device: Auth3's identity box holds ``data``."""
    i, r = initiator(forge=data), responder()
    r.receive_data(_one(i))
    i.receive_data(_one(r))
    _feed(r, _one(i))
    return _event(r, PeerIdentified)


def _identity_seeds() -> list[bytes]:
    """Well-formed identity boxes (the signatures cannot be right: the transcript differs)."""
    keys = [m.node_key(), m.device_key(), m.signing_key("classical", CryptoMode.CLASSICAL)]
    return [canonical.dumps({"identity": k.public.to_bytes(), "sig": k.sign(b"sonet-handshake-x", b"t")}) for k in keys]


def _messages(*frames: bytes) -> list[bytes]:
    return [*frames, _refusal()]


for _name, _decode, _seeds, _summary in [
    ("hello1", _hello1, lambda: _messages(recording().hello1), "Hello1 as a responder parses it"),
    ("hello2", _hello2, lambda: _messages(recording().hello2), "Hello2 as an initiator parses it"),
    ("auth3", _auth3, lambda: _messages(recording().auth3), "Auth3 as a responder parses it after Hello1"),
    ("done4", _done4, lambda: _messages(recording().done4), "Done4 as an initiator parses it after Hello2"),
    ("responder-identity", _responder_identity, _identity_seeds, "the plaintext of Hello2's identity box"),
    ("initiator-identity", _initiator_identity, _identity_seeds, "the plaintext of Auth3's identity box"),
]:
    register(
        Target(
            name=f"handshake-{_name}",
            summary=f"core/handshake: {_summary}",
            decode=_decode,
            errors=(RemoteProtocolError,),
            seeds=_seeds,
            codec="cbor" if _name.endswith("identity") else "msgpack",
        )
    )
