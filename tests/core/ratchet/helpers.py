"""Deterministic devices and sessions for the ratchet tests (no I/O, seeded randomness).

A :class:`Device` holds an identity key, an identity DH key (when its mode has a classical
part) and a prekey store; :func:`start` runs PQXDH from Alice to Bob and delivers the first
message, so a test begins with two established session states.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sonet.core import canonical
from sonet.core.crypto import CryptoMode, Rng, SigningKey, X25519KeyPair
from sonet.core.ratchet import (
    MLKEM768,
    X25519,
    PrekeyBundle,
    PrekeySecret,
    SessionState,
    SignedPrekey,
    decrypt,
    encrypt,
    generate_prekey,
    initiate,
    open_initial,
    verify_bundle,
)

MODES = list(CryptoMode)
MODE_IDS = [m.value for m in MODES]


def rng(seed: object) -> Rng:
    return random.Random(repr(seed)).randbytes


@functools.cache
def identity(mode: CryptoMode, name: str) -> SigningKey:
    return SigningKey.generate(mode, rng(("identity", mode.value, name)))


@dataclass
class Device:
    """One device: keys, published prekeys, and the secret store ``lookup`` reads."""

    mode: CryptoMode
    name: str
    identity: SigningKey
    dh_secret: bytes | None
    store: dict[tuple[str, int], PrekeySecret] = field(default_factory=dict)
    published: dict[str, list[SignedPrekey]] = field(default_factory=dict)
    rng: Rng = field(default=None)  # type: ignore[assignment]

    @property
    def dh_public(self) -> bytes | None:
        return X25519KeyPair(self.dh_secret).public if self.dh_secret is not None else None

    def lookup(self, kind: str, key_id: int) -> PrekeySecret | None:
        return self.store.get((kind, key_id))

    def add_prekey(self, kind: str, key_id: int, *, last_resort: bool = False) -> SignedPrekey:
        secret, signed = generate_prekey(self.identity, kind, key_id, self.rng, last_resort=last_resort)
        self.store[(kind, key_id)] = secret
        return signed

    def bundle(self, *, one_time: bool = True, verify: bool = True) -> PrekeyBundle:
        """The bundle a node would hand out: one-time keys while any are left (each once)."""
        pub = self.published
        pq_one_time = pub["pq_one_time"].pop(0) if one_time and pub["pq_one_time"] else None
        bundle = PrekeyBundle(
            mode=self.mode,
            identity=self.identity.public,
            identity_dh=self.dh_public,
            signed_prekey=pub["signed"][0] if pub["signed"] else None,
            pq_prekey=pq_one_time or (pub["pq_last_resort"][0] if pub["pq_last_resort"] else None),
            one_time_prekey=pub["one_time"].pop(0) if one_time and pub["one_time"] else None,
        )
        return verify_bundle(bundle) if verify else bundle


def device(mode: CryptoMode, name: str, *, one_time: int = 2) -> Device:
    dev = Device(
        mode=mode,
        name=name,
        identity=identity(mode, name),
        dh_secret=rng(("dh", mode.value, name))(32) if mode.uses_classical else None,
        rng=rng(("prekeys", mode.value, name)),
    )
    classical, pq = mode.uses_classical, mode.uses_pq
    dev.published = {
        "signed": [dev.add_prekey(X25519, 1)] if classical else [],
        "one_time": [dev.add_prekey(X25519, 100 + i) for i in range(one_time)] if classical else [],
        "pq_last_resort": [dev.add_prekey(MLKEM768, 1, last_resort=True)] if pq else [],
        "pq_one_time": [dev.add_prekey(MLKEM768, 100 + i) for i in range(one_time)] if pq else [],
    }
    return dev


@dataclass
class Pair:
    """Alice and Bob with established sessions (Bob has opened Alice's first message)."""

    mode: CryptoMode
    alice_dev: Device
    bob_dev: Device
    alice: SessionState
    bob: SessionState
    a_rng: Rng
    b_rng: Rng
    used: tuple[tuple[str, int], ...]

    def a2b(self, text: bytes) -> bytes:
        message = self.seal("a", text)
        assert self.open("a", message) == text
        return message

    def b2a(self, text: bytes) -> bytes:
        message = self.seal("b", text)
        assert self.open("b", message) == text
        return message

    def seal(self, sender: str, text: bytes) -> bytes:
        """``sender`` ("a": Alice, "b": Bob) encrypts ``text``; the message is not delivered."""
        if sender == "a":
            message, self.alice = encrypt(self.alice, text)
        else:
            message, self.bob = encrypt(self.bob, text)
        return message

    def open(self, sender: str, message: bytes) -> bytes:
        """The other side decrypts a message ``sender`` sealed; returns the plaintext."""
        if sender == "a":
            plaintext, self.bob = decrypt(self.bob, message, self.b_rng)
        else:
            plaintext, self.alice = decrypt(self.alice, message, self.a_rng)
        return plaintext


def initial(mode: CryptoMode, *, one_time: bool = True, seed: object = 0) -> tuple[Device, Device, SessionState, bytes, Rng]:
    """Alice starts a session with Bob and encrypts b"hello": (alice, bob, alice state,
    first message, alice's rng)."""
    alice_dev, bob_dev = device(mode, "alice"), device(mode, "bob")
    a_rng = rng(("alice", mode.value, seed))
    _header, state = initiate(
        mode=mode, identity=alice_dev.identity, identity_dh_secret=alice_dev.dh_secret, bundle=bob_dev.bundle(one_time=one_time), rng=a_rng
    )
    message, state = encrypt(state, b"hello")
    return alice_dev, bob_dev, state, message, a_rng


def start(mode: CryptoMode, *, one_time: bool = True, seed: object = 0, reply: bool = True) -> Pair:
    """An established session; with ``reply`` Bob has answered once, so both sides have made a
    ratchet turn and Alice no longer attaches her prekey header."""
    alice_dev, bob_dev, alice, message, a_rng = initial(mode, one_time=one_time, seed=seed)
    b_rng = rng(("bob", mode.value, seed))
    plaintext, bob, used = open_initial(
        message, mode=mode, identity=bob_dev.identity, identity_dh_secret=bob_dev.dh_secret, prekey_secret=bob_dev.lookup, rng=b_rng
    )
    assert plaintext == b"hello"
    pair = Pair(mode, alice_dev, bob_dev, alice, bob, a_rng, b_rng, used)
    if reply:
        pair.b2a(b"hello back")
    return pair


# Message surgery ---------------------------------------------------------------------------


def edit(message: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    """Decode a message, let ``change`` modify the map in place, re-encode canonically."""
    value = canonical.loads(message, max_bytes=1 << 20)
    change(value)
    return canonical.dumps(value)


def inner(value: dict[str, Any]) -> dict[str, Any]:
    """The ratchet message map, whether or not it is wrapped with a prekey header."""
    return value["m"] if "prekey" in value else value


def flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
