"""Wycheproof ML-KEM-768 and ML-DSA-65 vectors, through ``cryptography`` and our own code paths.

ML-KEM key generation and decapsulation also run through ``HpkePrivateKey(CryptoMode.PQ, seed)``
and the handshake's ``KexOffer``; encapsulation keys through ``HpkePublicKey`` and
``kex.respond``, which must refuse every invalid key with ``RemoteProtocolError``.

Not testable here: the deterministic encapsulation results (c, K) of mlkem_768_encaps, because
``cryptography`` cannot take the encapsulation randomness m; decapsulation with expanded keys
(mlkem_768_semi_expanded_decaps, mldsa_65_sign_noseed private keys), because ``cryptography``
loads ML-KEM/ML-DSA private keys only from seeds; and deterministic signing (cryptography always
hedges), so signing vectors are checked by verifying their signatures instead.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem, x25519

from sonet.core.crypto import kex
from sonet.core.crypto.hpke import HpkePrivateKey, HpkePublicKey
from sonet.core.crypto.kex import KexOffer
from sonet.core.crypto.modes import CryptoMode
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from tests.core.crypto._mldsa_ref import public_from_expanded
from tests.vectors import unhex, wycheproof

X25519_PUB = x25519.X25519PrivateKey.from_private_bytes(b"\x07" * 32).public_key().public_bytes_raw()


def _rng_with(mlkem_seed: bytes):
    """The rng KexOffer sees: 32 bytes of X25519 scalar, then the 64-byte ML-KEM seed."""
    queue = [b"\x05" * 32, mlkem_seed]

    def rng(n: int) -> bytes:
        chunk = queue.pop(0)
        assert len(chunk) == n
        return chunk

    return rng


def _constant_rng(n: int) -> bytes:
    return b"\x09" * n


# --- ML-KEM-768 ---------------------------------------------------------------------------


def test_wycheproof_mlkem_768_keygen_and_decaps() -> None:
    seen: Counter[str] = Counter()
    for group, t in wycheproof("mlkem_768"):
        assert group["parameterSet"] == "ML-KEM-768"
        seed, ek, c, k = unhex(t["seed"]), unhex(t.get("ek")), unhex(t["c"]), unhex(t["K"])
        if t["result"] == "valid":
            key = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
            assert key.public_key().public_bytes_raw() == ek, t["tcId"]
            assert key.decapsulate(c) == k, t["tcId"]
            # Our code paths: the sealed-sender key and the handshake's ephemeral KEM.
            assert HpkePrivateKey(CryptoMode.PQ, seed).public.raw == ek, t["tcId"]
            offer = KexOffer(_rng_with(seed))
            assert offer.mlkem_public == ek
            assert offer.finish(CryptoMode.PQ, None, c) == k, t["tcId"]
            seen["valid"] += 1
        elif len(seed) != 64:
            with pytest.raises(ValueError):
                mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
            with pytest.raises(LocalProtocolError):
                HpkePrivateKey(CryptoMode.PQ, seed)
            seen["invalid seed"] += 1
        else:
            assert len(c) != 1088, t["tcId"]
            with pytest.raises(ValueError):
                mlkem.MLKEM768PrivateKey.from_seed_bytes(seed).decapsulate(c)
            offer = KexOffer(_rng_with(seed))
            with pytest.raises(RemoteProtocolError):
                offer.finish(CryptoMode.PQ, None, c)
            seen["invalid ciphertext"] += 1
    assert seen == {"valid": 153, "invalid seed": 20, "invalid ciphertext": 20}


def test_wycheproof_mlkem_768_keygen_seed() -> None:
    n = 0
    for _, t in wycheproof("mlkem_768_keygen_seed"):
        assert t["result"] == "valid"
        seed, ek = unhex(t["seed"]), unhex(t["ek"])
        assert mlkem.MLKEM768PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw() == ek
        assert HpkePrivateKey(CryptoMode.PQ, seed).public.raw == ek, t["tcId"]
        n += 1
    assert n == 100


def test_wycheproof_mlkem_768_encaps_keys() -> None:
    """Valid keys are accepted by every entry point; invalid ones (wrong length, coefficients not
    reduced mod q) are refused with RemoteProtocolError. The vectors' (c, K) need the
    encapsulation randomness m, which cryptography cannot take, so only the key check is tested."""
    seen: Counter[str] = Counter()
    for group, t in wycheproof("mlkem_768_encaps"):
        assert group["parameterSet"] == "ML-KEM-768"
        ek = unhex(t["ek"])
        if t["result"] == "valid":
            mlkem.MLKEM768PublicKey.from_public_bytes(ek)
            assert HpkePublicKey(CryptoMode.PQ, ek).raw == ek
            assert HpkePublicKey(CryptoMode.HYBRID, ek + X25519_PUB).raw == ek + X25519_PUB
            for mode in (CryptoMode.PQ, CryptoMode.HYBRID):
                resp = kex.respond(mode, _constant_rng, X25519_PUB, ek)
                assert resp.mlkem_ciphertext is not None and len(resp.mlkem_ciphertext) == 1088
                assert len(resp.shared_secret) == (32 if mode is CryptoMode.PQ else 64)
            seen["valid"] += 1
        else:
            with pytest.raises(ValueError):
                mlkem.MLKEM768PublicKey.from_public_bytes(ek)
            with pytest.raises(RemoteProtocolError):
                HpkePublicKey(CryptoMode.PQ, ek)
            with pytest.raises(RemoteProtocolError):
                HpkePublicKey(CryptoMode.HYBRID, ek + X25519_PUB)
            for mode in (CryptoMode.PQ, CryptoMode.HYBRID):
                with pytest.raises(RemoteProtocolError):
                    kex.respond(mode, _constant_rng, X25519_PUB, ek)
            seen["invalid, 1184 bytes" if len(ek) == 1184 else "invalid, wrong length"] += 1
    assert seen == {"valid": 133, "invalid, 1184 bytes": 112, "invalid, wrong length": 20}


# --- ML-DSA-65 ----------------------------------------------------------------------------


def _verify(pub: mldsa.MLDSA65PublicKey, sig: bytes, msg: bytes, ctx: bytes | None) -> bool:
    try:
        pub.verify(sig, msg, ctx)
        return True
    except (InvalidSignature, ValueError):  # ValueError: context longer than 255 bytes
        return False


def _mu(pk: bytes, msg: bytes, ctx: bytes) -> bytes:
    """FIPS 204 external mu: H(H(pk, 64) || 0 || len(ctx) || ctx || M, 64)."""
    tr = hashlib.shake_256(pk).digest(64)
    return hashlib.shake_256(tr + bytes([0, len(ctx)]) + ctx + msg).digest(64)


def test_wycheproof_mldsa_65_verify() -> None:
    seen: Counter[str] = Counter()
    for group, t in wycheproof("mldsa_65_verify"):
        msg, sig = unhex(t["msg"]), unhex(t["sig"])
        ctx = unhex(t["ctx"]) if "ctx" in t else None
        try:
            pub = mldsa.MLDSA65PublicKey.from_public_bytes(unhex(group["publicKey"]))
        except ValueError:
            assert t["result"] == "invalid" and "IncorrectPublicKeyLength" in t["flags"], t["tcId"]
            seen["invalid public key refused"] += 1
            continue
        ok = _verify(pub, sig, msg, ctx)
        assert ok == (t["result"] == "valid"), (t["tcId"], t["comment"], t["flags"])
        if ok:  # the same signature through the external-mu entry point
            pub.verify_mu(sig, _mu(unhex(group["publicKey"]), msg, ctx or b""))
        seen[t["result"]] += 1
    assert seen == {"valid": 79, "invalid": 127, "invalid public key refused": 4}


def _check_sign_vector(pk_bytes: bytes, t: dict) -> str:
    pub = mldsa.MLDSA65PublicKey.from_public_bytes(pk_bytes)
    sig, ctx = unhex(t["sig"]), unhex(t.get("ctx"))
    if "msg" in t:
        msg = unhex(t["msg"])
        if len(ctx) > 255:
            assert t["result"] == "invalid" and "InvalidContext" in t["flags"]
            assert not _verify(pub, sig, msg, ctx)
            return "invalid context"
        assert t["result"] == "valid", t["tcId"]
        assert _verify(pub, sig, msg, ctx), t["tcId"]
        if "mu" in t:
            assert unhex(t["mu"]) == _mu(pk_bytes, msg, ctx)
        flipped = bytearray(sig)
        flipped[len(sig) // 2] ^= 0x01
        assert not _verify(pub, bytes(flipped), msg, ctx)
        return "valid"
    assert t["result"] == "valid" and "Internal" in t["flags"], t["tcId"]
    pub.verify_mu(sig, unhex(t["mu"]))
    with pytest.raises(InvalidSignature):
        pub.verify_mu(sig, bytes(64))
    return "valid (mu only)"


def test_wycheproof_mldsa_65_sign_seed() -> None:
    """Key generation from the 32-byte seed must give the vector's public key; the vector's
    (deterministic) signatures must verify. Signing with a too-long context must be refused."""
    seen: Counter[str] = Counter()
    for group, t in wycheproof("mldsa_65_sign_seed"):
        seed = unhex(group["privateSeed"])
        if len(seed) != 32:
            assert t["result"] == "invalid" and "IncorrectPrivateKeyLength" in t["flags"]
            with pytest.raises(ValueError):
                mldsa.MLDSA65PrivateKey.from_seed_bytes(seed)
            seen["invalid seed"] += 1
            continue
        key = mldsa.MLDSA65PrivateKey.from_seed_bytes(seed)
        pk = unhex(group["publicKey"])
        assert key.public_key().public_bytes_raw() == pk, t["tcId"]
        outcome = _check_sign_vector(pk, t)
        if outcome == "invalid context":
            with pytest.raises(ValueError):
                key.sign(unhex(t["msg"]), unhex(t["ctx"]))
        seen[outcome] += 1
    assert seen == {"valid": 84, "valid (mu only)": 17, "invalid context": 1, "invalid seed": 3}


def test_wycheproof_mldsa_65_sign_noseed() -> None:
    """Expanded private keys cannot be loaded by cryptography: the valid signatures are verified
    against the vector's public key (which the test oracle re-derives from the expanded key);
    the four malformed private keys (wrong length, s1/s2 out of range) cannot be exercised."""
    seen: Counter[str] = Counter()
    for group, t in wycheproof("mldsa_65_sign_noseed"):
        sk = unhex(group["privateKey"])
        if "IncorrectPrivateKeyLength" in t["flags"] or "InvalidPrivateKey" in t["flags"]:
            assert t["result"] == "invalid"
            seen["not testable (expanded private key)"] += 1
            continue
        pk = unhex(group["publicKey"])
        assert public_from_expanded(sk) == pk, t["tcId"]
        seen[_check_sign_vector(pk, t)] += 1
    assert seen == {"valid": 63, "valid (mu only)": 10, "invalid context": 1, "not testable (expanded private key)": 4}
