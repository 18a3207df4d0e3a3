"""core/crypto/dh.py: X25519 and ML-KEM-768 wrappers refuse bad peer input and hide secrets."""

from __future__ import annotations

import pytest

from sonet.core.crypto import MlKemKeyPair, X25519KeyPair, check_mlkem_public, mlkem_encapsulate
from sonet.core.errors import LocalProtocolError, RemoteProtocolError

from .helpers import flip, rng


def test_x25519_rfc7748_vector() -> None:
    alice = X25519KeyPair(bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    bob = X25519KeyPair(bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
    assert alice.public.hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    assert bob.public.hex() == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert alice.exchange(bob.public).hex() == shared == bob.exchange(alice.public).hex()


@pytest.mark.parametrize("point", [bytes(32), b"\x01" + bytes(31)], ids=["zero", "one"])
def test_x25519_refuses_low_order_points(point: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="low-order"):
        X25519KeyPair.generate(rng("x")).exchange(point)


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), "x" * 32, None])
def test_x25519_refuses_malformed_public_keys(bad: object) -> None:
    with pytest.raises(RemoteProtocolError, match="32 bytes"):
        X25519KeyPair.generate(rng("x")).exchange(bad)  # type: ignore[arg-type]


def test_secret_lengths_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        X25519KeyPair(bytes(31))
    with pytest.raises(LocalProtocolError):
        MlKemKeyPair(bytes(32))


def test_mlkem_round_trip_and_implicit_rejection() -> None:
    pair = MlKemKeyPair.generate(rng("kem"))
    assert MlKemKeyPair(pair.seed_bytes()).public == pair.public  # deterministic from the seed
    shared, ct = mlkem_encapsulate(pair.public)
    assert len(shared) == 32 and len(ct) == 1088
    assert pair.decapsulate(ct) == shared
    assert pair.decapsulate(flip(ct, 100)) != shared  # a wrong ciphertext yields an unrelated secret
    other = MlKemKeyPair.generate(rng("other"))
    assert other.decapsulate(ct) != shared


def test_mlkem_refuses_malformed_input() -> None:
    pair = MlKemKeyPair.generate(rng("kem"))
    with pytest.raises(RemoteProtocolError, match="1184 bytes"):
        mlkem_encapsulate(pair.public[:-1])
    with pytest.raises(RemoteProtocolError, match="malformed"):
        check_mlkem_public(b"\xff" * 1184)  # coefficients >= q fail the FIPS 203 modulus check
    with pytest.raises(RemoteProtocolError, match="1088 bytes"):
        pair.decapsulate(bytes(1087))
    check_mlkem_public(pair.public)


def test_reprs_hide_secrets() -> None:
    x = X25519KeyPair.generate(rng("x"))
    k = MlKemKeyPair.generate(rng("k"))
    assert repr(x) == "X25519KeyPair(<secret>)" and x.secret_bytes().hex() not in repr(x)
    assert repr(k) == "MlKemKeyPair(<secret>)"
