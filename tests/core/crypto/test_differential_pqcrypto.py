"""Differential tests: ML-KEM-768 and ML-DSA-65 from ``cryptography`` (OpenSSL) against
``pqcrypto`` (PQClean), in both directions, plus our own key agreement and signatures checked
by the independent implementation.

pqcrypto signs pure ML-DSA with an empty context unless one is given; ``cryptography``'s
``sign(data)`` without context is the same, so signatures interoperate either way.
"""

from __future__ import annotations

import random

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem
from pqcrypto import InvalidSignatureError
from pqcrypto.kem import ml_kem_768 as pq_kem
from pqcrypto.sign import ml_dsa_65 as pq_dsa

from sonet.core import canonical
from sonet.core.crypto import kex, sign
from sonet.core.crypto.kex import KexOffer
from sonet.core.crypto.modes import CryptoMode
from sonet.core.crypto.sign import SigningKey

KEYS = 4
MESSAGES = [b"", b"m", b"hello sonet" * 3, bytes(range(256)) * 4]
# FIPS 204 allows contexts up to 255 bytes, and cryptography accepts them (Wycheproof tcId 108),
# but pqcrypto 1.0.0 refuses to sign with a 254- or 255-byte context ("invalid context length")
# and rejects such signatures made by cryptography: the longest context compared here is 253.
CONTEXTS = [None, b"", b"ctx", bytes(253)]


def _rng(seed: int):
    r = random.Random(seed)
    return r.randbytes


# --- ML-KEM-768 ---------------------------------------------------------------------------


def test_mlkem_cryptography_keys_pqcrypto_encaps() -> None:
    rng = _rng(1)
    for _ in range(KEYS):
        key = mlkem.MLKEM768PrivateKey.from_seed_bytes(rng(64))
        pk = key.public_key().public_bytes_raw()
        for _ in range(3):
            ct, ss = pq_kem.encaps(pk)
            assert len(ct) == 1088 and len(ss) == 32
            assert key.decapsulate(ct) == ss
            tampered = bytearray(ct)
            tampered[rng(1)[0] * 4] ^= 0x04
            # implicit rejection: a pseudo-random secret, not an error and not ss
            assert key.decapsulate(bytes(tampered)) != ss


def test_mlkem_pqcrypto_keys_cryptography_encaps() -> None:
    for _ in range(KEYS):
        pk, sk = pq_kem.keygen()
        peer = mlkem.MLKEM768PublicKey.from_public_bytes(pk)
        assert peer.public_bytes_raw() == pk
        for _ in range(3):
            ss, ct = peer.encapsulate()
            assert pq_kem.decaps(sk, ct) == ss
            tampered = bytearray(ct)
            tampered[-1] ^= 0x80
            assert pq_kem.decaps(sk, bytes(tampered)) != ss


def test_mlkem_our_handshake_against_pqcrypto() -> None:
    """Our KexOffer/respond in PQ mode, with pqcrypto playing the other side."""
    rng = _rng(2)
    for _ in range(KEYS):
        # we initiate, pqcrypto responds
        offer = KexOffer(rng)
        ct, ss = pq_kem.encaps(offer.mlkem_public)
        assert offer.finish(CryptoMode.PQ, None, ct) == ss
        # pqcrypto initiates, we respond
        pk, sk = pq_kem.keygen()
        resp = kex.respond(CryptoMode.PQ, rng, bytes(32), pk)
        assert resp.x25519_share is None and resp.mlkem_ciphertext is not None
        assert pq_kem.decaps(sk, resp.mlkem_ciphertext) == resp.shared_secret


# --- ML-DSA-65 ----------------------------------------------------------------------------


def _crypto_accepts(pub: mldsa.MLDSA65PublicKey, sig: bytes, msg: bytes, ctx: bytes | None) -> bool:
    try:
        pub.verify(sig, msg, ctx)
        return True
    except InvalidSignature:
        return False


def _pq_accepts(pk: bytes, sig: bytes, msg: bytes, ctx: bytes | None) -> bool:
    try:
        result = pq_dsa.verify(pk, msg, sig, context=ctx)
    except InvalidSignatureError:
        return False
    assert result is None
    return True


def _tampered(sig: bytes, rng) -> list[bytes]:
    out = []
    for pos in (0, 31, 32 + rng(1)[0], len(sig) // 2, len(sig) - 80, len(sig) - 1):
        flipped = bytearray(sig)
        flipped[pos] ^= 1 << (rng(1)[0] % 8)
        out.append(bytes(flipped))
    return out


def test_mldsa_cryptography_signs_pqcrypto_verifies() -> None:
    rng = _rng(3)
    checked = 0
    for _ in range(KEYS):
        key = mldsa.MLDSA65PrivateKey.from_seed_bytes(rng(32))
        pk = key.public_key().public_bytes_raw()
        for msg in MESSAGES:
            ctx = CONTEXTS[checked % len(CONTEXTS)]
            sig = key.sign(msg, ctx)
            assert len(sig) == pq_dsa.SIGNATURE_SIZE
            assert _pq_accepts(pk, sig, msg, ctx)
            assert _crypto_accepts(key.public_key(), sig, msg, ctx)
            assert not _pq_accepts(pk, sig, msg + b"x", ctx)
            assert not _pq_accepts(pk, sig, msg, (ctx or b"")[:-1] + b"y")
            for bad in _tampered(sig, rng):
                assert _pq_accepts(pk, bad, msg, ctx) is False
                assert _crypto_accepts(key.public_key(), bad, msg, ctx) is False
            checked += 1
    assert checked == KEYS * len(MESSAGES)


def test_mldsa_pqcrypto_signs_cryptography_verifies() -> None:
    rng = _rng(4)
    checked = 0
    for _ in range(KEYS):
        pk, sk = pq_dsa.keygen()
        pub = mldsa.MLDSA65PublicKey.from_public_bytes(pk)
        assert pub.public_bytes_raw() == pk
        for msg in MESSAGES:
            ctx = CONTEXTS[checked % len(CONTEXTS)]
            sig = pq_dsa.sign(sk, msg) if ctx is None else pq_dsa.sign(sk, msg, context=ctx)
            assert _crypto_accepts(pub, sig, msg, ctx)
            assert _crypto_accepts(pub, sig, msg, None if ctx else b"") == (not ctx)
            assert not _crypto_accepts(pub, sig, msg + b"x", ctx)
            for bad in _tampered(sig, rng):
                assert _crypto_accepts(pub, bad, msg, ctx) is False
                assert _pq_accepts(pk, bad, msg, ctx) is False
            checked += 1
    assert checked == KEYS * len(MESSAGES)


@pytest.mark.parametrize("mode", [CryptoMode.PQ, CryptoMode.HYBRID])
def test_our_mldsa_component_verifies_in_pqcrypto(mode: CryptoMode) -> None:
    """Our identity signatures: the ML-DSA part is pure ML-DSA-65 over M' with context = label."""
    rng = _rng(5)
    for i in range(KEYS):
        key = SigningKey.generate(mode, rng)
        pk = canonical.loads(key.public.to_bytes())["mldsa65"]
        label, msg = b"test-label-%d" % i, MESSAGES[i % len(MESSAGES)]
        sig = key.sign(label, msg)
        ml_sig = sig[-pq_dsa.SIGNATURE_SIZE :]
        framed = sign._message(mode, label, msg)
        assert _pq_accepts(pk, ml_sig, framed, label)
        assert not _pq_accepts(pk, ml_sig, framed, b"other-label")
        assert not _pq_accepts(pk, ml_sig, sign._message(CryptoMode.PQ if mode is CryptoMode.HYBRID else CryptoMode.HYBRID, label, msg), label)
