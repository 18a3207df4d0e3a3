"""Wycheproof X25519 and Ed25519, RFC 7748 X25519 (circl copy): external vectors.

X25519 runs through ``cryptography`` and through our own ``core.crypto.kex`` code path, which
must turn every low-order public key (all-zero shared secret, Wycheproof "acceptable") into a
``RemoteProtocolError``. Ed25519 verification runs through ``cryptography`` directly: our
``VerifyKey`` frames messages with mode and label, so external vectors cannot go through it.
"""

from __future__ import annotations

from collections import Counter

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from sonet.core.crypto import kex
from sonet.core.crypto.kex import KexOffer
from sonet.core.crypto.modes import CryptoMode
from sonet.core.errors import RemoteProtocolError
from tests.vectors import load_json, unhex, wycheproof

ZERO32 = bytes(32)


def _crypto_exchange(private: bytes, public: bytes) -> bytes:
    return x25519.X25519PrivateKey.from_private_bytes(private).exchange(x25519.X25519PublicKey.from_public_bytes(public))


def _fixed_rng(*chunks: bytes):
    queue = list(chunks)

    def rng(n: int) -> bytes:
        chunk = queue.pop(0)
        assert len(chunk) == n
        return chunk

    return rng


def test_wycheproof_x25519() -> None:
    seen: Counter[str] = Counter()
    for group, t in wycheproof("x25519"):
        assert group["curve"] == "curve25519"
        priv, pub, shared = unhex(t["private"]), unhex(t["public"]), unhex(t["shared"])
        assert len(pub) == 32 and len(priv) == 32, t["tcId"]
        key = x25519.X25519PrivateKey.from_private_bytes(priv)
        if t["result"] == "valid" or (t["result"] == "acceptable" and shared != ZERO32):
            assert shared != ZERO32
            assert _crypto_exchange(priv, pub) == shared, t["tcId"]
            assert kex._x25519_exchange(key, pub) == shared, t["tcId"]
            seen[t["result"]] += 1
        else:
            # "acceptable" low-order public keys, and any future "invalid": must be refused.
            assert t["result"] == "acceptable" and "LowOrderPublic" in t["flags"], t["tcId"]
            with pytest.raises(ValueError):
                _crypto_exchange(priv, pub)
            with pytest.raises(RemoteProtocolError):
                kex._x25519_exchange(key, pub)
            seen["low-order rejected"] += 1
    assert seen == {"valid": 264, "acceptable": 223, "low-order rejected": 31}


def test_wycheproof_x25519_low_order_refused_by_handshake() -> None:
    """Every Wycheproof low-order point, fed to both sides of the key agreement, is refused."""
    low_order = {unhex(t["public"]) for _, t in wycheproof("x25519") if "LowOrderPublic" in t["flags"]}
    assert len(low_order) >= 10
    offer = KexOffer(_fixed_rng(b"\x11" * 32, b"\x22" * 64))
    for point in sorted(low_order):
        for mode in (CryptoMode.CLASSICAL, CryptoMode.HYBRID):
            with pytest.raises(RemoteProtocolError):
                kex.respond(mode, _fixed_rng(b"\x33" * 32), point, offer.mlkem_public)
            with pytest.raises(RemoteProtocolError):
                offer.finish(mode, point, None if mode is CryptoMode.CLASSICAL else bytes(1088))


def test_rfc7748_x25519_kat() -> None:
    cases = load_json("circl-rfc7748/rfc7748_kat_test.json")
    for c in cases:
        scalar, u, out = unhex(c["scalar"]), unhex(c["input"]), unhex(c["output"])
        assert _crypto_exchange(scalar, u) == out
        assert kex._x25519_exchange(x25519.X25519PrivateKey.from_private_bytes(scalar), u) == out
    assert len(cases) == 6


def test_rfc7748_x25519_iterated() -> None:
    """RFC 7748 §5.2 iteration; the 1,000,000-iteration case is left out (minutes, no new coverage)."""
    ran = 0
    for c in load_json("circl-rfc7748/rfc7748_times_test.json"):
        if c["times"] > 1000:
            continue
        k = u = (9).to_bytes(32, "little")
        for _ in range(c["times"]):
            k, u = _crypto_exchange(k, u), k
        assert k == unhex(c["key"])
        ran += 1
    assert ran == 2


def test_wycheproof_ed25519_verify() -> None:
    seen: Counter[tuple[str, str]] = Counter()
    for group, t in wycheproof("ed25519"):
        pub = ed25519.Ed25519PublicKey.from_public_bytes(unhex(group["publicKey"]["pk"]))
        msg, sig = unhex(t["msg"]), unhex(t["sig"])
        try:
            pub.verify(sig, msg)
            outcome = "accepted"
        except InvalidSignature:
            outcome = "rejected"
        expected = "accepted" if t["result"] == "valid" else "rejected"
        assert outcome == expected, (t["tcId"], t["comment"], t["flags"])
        seen[(t["result"], outcome)] += 1
    assert seen == {("valid", "accepted"): 88, ("invalid", "rejected"): 63}
