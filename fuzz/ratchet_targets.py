"""Targets for what a device decodes inside a sealed box: ratchet messages (of an established
session, and first messages that start one with a prekey header) and the signed prekeys of a
bundle its node hands out.

A hybrid session between two fixed devices is set up once (PQXDH, first message, one reply).
``decrypt`` takes a state and returns a new one without touching it, so every input meets the
same state.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sonet.core.crypto import CryptoMode, SigningKey, X25519KeyPair
from sonet.core.errors import RemoteProtocolError
from sonet.core.ratchet import (
    MLKEM768,
    X25519,
    PrekeyBundle,
    PrekeySecret,
    SessionState,
    SignedPrekey,
    decode_prekey,
    decrypt,
    encrypt,
    generate_prekey,
    initiate,
    open_initial,
    verify_bundle,
)

from . import material as m
from .target import Target, register

__all__: list[str] = []

MODE = CryptoMode.HYBRID


@dataclass(frozen=True)
class _Bob:
    identity: SigningKey
    dh_secret: bytes
    secrets: dict[tuple[str, int], PrekeySecret]
    prekeys: tuple[SignedPrekey, ...]  # signed X25519, one-time X25519, ML-KEM last resort

    def bundle(self) -> PrekeyBundle:
        signed, one_time, pq = self.prekeys
        return verify_bundle(
            PrekeyBundle(
                mode=MODE,
                identity=self.identity.public,
                identity_dh=X25519KeyPair(self.dh_secret).public,
                signed_prekey=signed,
                pq_prekey=pq,
                one_time_prekey=one_time,
            )
        )


@functools.cache
def _bob() -> _Bob:
    identity = m.signing_key("ratchet bob")
    secrets: dict[tuple[str, int], PrekeySecret] = {}
    prekeys = []
    for kind, key_id, last_resort in ((X25519, 1, False), (X25519, 100, False), (MLKEM768, 1, True)):
        secret, signed = generate_prekey(identity, kind, key_id, m.rng(f"prekey {kind} {key_id}"), last_resort=last_resort)
        secrets[(kind, key_id)] = secret
        prekeys.append(signed)
    return _Bob(identity, m.rng("ratchet bob dh")(32), secrets, tuple(prekeys))


@functools.cache
def _session() -> tuple[SessionState, SessionState, bytes, tuple[bytes, ...]]:
    """(alice's state, bob's state, alice's first message, later messages alice sent)."""
    alice = m.signing_key("ratchet alice")
    alice_dh = m.rng("ratchet alice dh")(32)
    bob = _bob()
    _header, a_state = initiate(mode=MODE, identity=alice, identity_dh_secret=alice_dh, bundle=bob.bundle(), rng=m.rng("alice"))
    first, a_state = encrypt(a_state, b"hello")
    _plain, b_state, _used = _open_first(first)
    reply, b_state = encrypt(b_state, b"hello back")
    _plain, a_state = decrypt(a_state, reply, m.rng("alice turn"))
    later = []
    for text in (b"one", b"two", b"three"):
        message, a_state = encrypt(a_state, text)
        later.append(message)
    return a_state, b_state, first, tuple(later)


def _open_first(message: bytes) -> tuple[bytes, SessionState, object]:
    bob = _bob()
    return open_initial(
        message, mode=MODE, identity=bob.identity, identity_dh_secret=bob.dh_secret,
        prekey_secret=lambda kind, key_id: bob.secrets.get((kind, key_id)), rng=m.rng("bob"),
    )


def _decrypt(data: bytes) -> bytes:
    _alice, bob, _first, _later = _session()
    plaintext, _state = decrypt(bob, data, m.rng("bob decrypt"))
    return plaintext


register(
    Target(
        name="ratchet-message",
        summary="core.ratchet.decrypt of a message in an established hybrid session",
        decode=_decrypt,
        errors=(RemoteProtocolError,),  # DecryptError is one
        returns=bytes,
        seeds=lambda: list(_session()[3]),
        codec="cbor",
    )
)

register(
    Target(
        name="ratchet-first-message",
        summary="core.ratchet.open_initial: a first message with its prekey header",
        decode=lambda data: _open_first(data)[0],
        errors=(RemoteProtocolError,),
        returns=bytes,
        seeds=lambda: [_session()[2]],
        codec="cbor",
    )
)

register(
    Target(
        name="signed-prekey",
        summary="core.ratchet.decode_prekey + its signature check (one prekey of a bundle)",
        decode=lambda data: _checked_prekey(data),
        errors=(RemoteProtocolError,),
        returns=SignedPrekey,
        seeds=lambda: [p.to_bytes() for p in _bob().prekeys],
        codec="cbor",
    )
)


def _checked_prekey(data: bytes) -> SignedPrekey:
    prekey = decode_prekey(data)
    prekey.check(_bob().identity.public)
    return prekey
