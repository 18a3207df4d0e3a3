"""core/crypto/mls_sign.py: the five MLS signature schemes. Keys from rng, deterministic
signatures, the encodings the MLS vectors use, and every malformed key or signature answered with
False (never an exception); Ed25519 also against Wycheproof."""

from __future__ import annotations

import pytest

from sonet.core.crypto.kdf import shake256
from sonet.core.crypto.mls_sign import SignatureScheme, signature_algorithm
from sonet.core.errors import LocalProtocolError
from tests.vectors import unhex, wycheproof

SCHEMES = list(SignatureScheme)
PUBLIC_LEN = {
    SignatureScheme.ED25519: 32,
    SignatureScheme.ED448: 57,
    SignatureScheme.ECDSA_SECP256R1_SHA256: 65,
    SignatureScheme.ECDSA_SECP384R1_SHA384: 97,
    SignatureScheme.ECDSA_SECP521R1_SHA512: 133,
}


def _rng(seed: bytes):  # type: ignore[no-untyped-def]
    calls = [0]

    def rng(n: int) -> bytes:
        calls[0] += 1
        return shake256(seed + bytes([calls[0]]), n)

    return rng


def _flip(data: bytes, i: int) -> bytes:
    b = bytearray(data)
    b[i] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_generate_sign_verify(scheme: SignatureScheme) -> None:
    alg = signature_algorithm(scheme)
    priv, pub = alg.generate(_rng(b"seed"))
    assert (priv, pub) == alg.generate(_rng(b"seed"))  # a function of the rng only
    assert len(priv) == alg.nsk and len(pub) == PUBLIC_LEN[scheme]
    assert alg.public_from_private(priv) == pub
    sig = alg.sign(priv, b"message")
    assert sig == alg.sign(alg.private_key(priv), b"message")  # deterministic (RFC 6979 for ECDSA)
    assert alg.verify(pub, b"message", sig)
    assert not alg.verify(pub, b"messagE", sig)
    other = alg.generate(_rng(b"other"))[1]
    assert not alg.verify(other, b"message", sig)
    if scheme.name.startswith("ECDSA"):
        assert sig[0] == 0x30 and pub[0] == 0x04  # DER signature, uncompressed point
    # every malformed signature or key is False, never an exception
    for bad_sig in (_flip(sig, len(sig) - 1), _flip(sig, 0), sig[:-1], sig + b"\x00", b"", b"\x30\x00"):
        assert not alg.verify(pub, b"message", bad_sig)
    for bad_pub in (pub[:-1], pub + b"\x00", b"", b"\x02" + pub[1:], _flip(pub, len(pub) - 1)):
        assert not alg.verify(bad_pub, b"message", sig)
    assert not alg.verify("not bytes", b"message", sig)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.name)
def test_bad_private_keys_are_a_local_error(scheme: SignatureScheme) -> None:
    alg = signature_algorithm(scheme)
    with pytest.raises(LocalProtocolError):
        alg.private_key(bytes(alg.nsk - 1))
    if scheme.name.startswith("ECDSA"):
        with pytest.raises(LocalProtocolError, match="malformed"):
            alg.private_key(bytes(alg.nsk))  # the scalar 0
        with pytest.raises(LocalProtocolError, match="malformed"):
            alg.private_key(b"\xff" * alg.nsk)  # over the order


def test_ecdsa_private_key_without_leading_zero_bytes_is_read() -> None:
    alg = signature_algorithm(SignatureScheme.ECDSA_SECP521R1_SHA512)
    full = b"\x00" + bytes(range(1, 66))
    assert alg.public_from_private(full[1:]) == alg.public_from_private(full)
    assert alg.verify(alg.public_from_private(full), b"m", alg.sign(full[1:], b"m"))
    with pytest.raises(LocalProtocolError):
        alg.private_key(b"")
    with pytest.raises(LocalProtocolError):
        alg.private_key(b"\x01" + full)  # longer than the curve's scalars


def test_ecdsa_p521_keys_from_rng_fit_521_bits() -> None:
    alg = signature_algorithm(SignatureScheme.ECDSA_SECP521R1_SHA512)
    for i in range(8):
        priv, _ = alg.generate(_rng(bytes([i])))
        assert priv[0] <= 0x01


def test_ecdsa_generate_rejects_out_of_range_candidates() -> None:
    alg = signature_algorithm(SignatureScheme.ECDSA_SECP256R1_SHA256)
    draws = iter([b"\xff" * 32, bytes(32), b"\x01" * 32])
    priv, _ = alg.generate(lambda n: next(draws))
    assert priv == b"\x01" * 32


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="0x0804"):
        signature_algorithm(0x0804)


def test_ed25519_wycheproof() -> None:
    alg = signature_algorithm(SignatureScheme.ED25519)
    count = 0
    for group, test in wycheproof("ed25519"):
        pub = unhex(group["publicKey"]["pk"])
        assert alg.verify(pub, unhex(test["msg"]), unhex(test["sig"])) == (test["result"] == "valid"), test["tcId"]
        count += 1
    assert count > 100
