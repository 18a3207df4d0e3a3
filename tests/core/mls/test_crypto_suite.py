"""core/mls/crypto: the suite table (RFC 9420 §17.1 and OpenMLS's X-Wing suite 0x004D), the
labeled operations' encodings, and the suites' sign/encrypt round trips with their failures."""

from __future__ import annotations

import pytest

from sonet.core.crypto.kdf import shake256
from sonet.core.crypto.mls_sign import SignatureScheme
from sonet.core.errors import DecryptError, RemoteProtocolError
from sonet.core.mls.codec import DecodeError
from sonet.core.mls.crypto import SUITE_IDS, CipherSuite, cipher_suite

#: id -> (KEM, KDF, AEAD, hash length, signature scheme)
TABLE = {
    0x0001: (0x0020, 1, 1, 32, SignatureScheme.ED25519),
    0x0002: (0x0010, 1, 1, 32, SignatureScheme.ECDSA_SECP256R1_SHA256),
    0x0003: (0x0020, 1, 3, 32, SignatureScheme.ED25519),
    0x0004: (0x0021, 3, 2, 64, SignatureScheme.ED448),
    0x0005: (0x0012, 3, 2, 64, SignatureScheme.ECDSA_SECP521R1_SHA512),
    0x0006: (0x0021, 3, 3, 64, SignatureScheme.ED448),
    0x0007: (0x0011, 2, 2, 48, SignatureScheme.ECDSA_SECP384R1_SHA384),
    0x004D: (0x647A, 1, 3, 32, SignatureScheme.ED25519),
}


def _rng(seed: bytes):  # type: ignore[no-untyped-def]
    counter = [0]

    def rng(n: int) -> bytes:
        counter[0] += 1
        return shake256(seed + counter[0].to_bytes(4, "big"), n)

    return rng


def test_the_suite_table() -> None:
    assert SUITE_IDS == tuple(TABLE)
    for suite_id, (kem, kdf, aead, nh, scheme) in TABLE.items():
        cs = cipher_suite(suite_id)
        assert (cs.id, cs.kem.id, cs.kdf.id, cs.aead.id, cs.nh, cs.signature_scheme) == (suite_id, kem, kdf, aead, nh, scheme)
        assert cs.nk == (16 if aead == 1 else 32) and cs.nn == 12
    xwing = cipher_suite(0x004D)
    assert xwing.name == "MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519" and xwing.npk == 1216


@pytest.mark.parametrize("bad", [0, 8, 0x004E, 0xFFFF, "1", None])
def test_an_unknown_suite_is_a_decode_error(bad: object) -> None:
    with pytest.raises(DecodeError, match="unsupported cipher suite"):
        cipher_suite(bad)  # type: ignore[arg-type]


def test_labeled_structs_are_encoded_as_rfc_9420_says() -> None:
    cs = cipher_suite(1)
    secret = bytes(range(32))
    # KDFLabel: uint16 length, opaque label<V> = "MLS 1.0 " + label, opaque context<V>
    info = (16).to_bytes(2, "big") + bytes([8 + 3]) + b"MLS 1.0 key" + bytes([2]) + b"ct"
    assert cs.expand_with_label(secret, b"key", b"ct", 16) == cs.expand(secret, info, 16)
    assert cs.derive_secret(secret, b"x") == cs.expand_with_label(secret, b"x", b"", 32)
    assert cs.derive_tree_secret(secret, b"nonce", 7, 12) == cs.expand_with_label(secret, b"nonce", b"\x00\x00\x00\x07", 12)
    # RefHashInput: label<V> and value<V>, the label taken whole
    label = b"MLS 1.0 KeyPackage Reference"
    assert cs.make_key_package_ref(b"kp") == cs.hash(bytes([len(label)]) + label + b"\x02kp")
    assert cs.make_proposal_ref(b"ac") == cs.ref_hash(b"MLS 1.0 Proposal Reference", b"ac")


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_sign_with_label(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    priv, pub = cs.signature_key_pair(_rng(b"sig"))
    assert cs.signature_public_key(priv) == pub
    sig = cs.sign_with_label(priv, b"LeafNodeTBS", b"content")
    assert sig == cs.sign_with_label(cs.signature_private_key(priv), b"LeafNodeTBS", b"content")
    assert cs.verify_with_label(pub, b"LeafNodeTBS", b"content", sig)
    assert not cs.verify_with_label(pub, b"KeyPackageTBS", b"content", sig)  # another label
    assert not cs.verify_with_label(pub, b"LeafNodeTBS", b"contenT", sig)
    assert not cs.verify_with_label(pub, b"LeafNodeTBS", b"content", sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not cs.verify_with_label(pub[:-1], b"LeafNodeTBS", b"content", sig)
    # the label is bound as "MLS 1.0 " + label, not as raw bytes of the content
    assert not cs.verify_with_label(pub, b"", b"\x13MLS 1.0 LeafNodeTBS\x07content", sig)


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_encrypt_with_label(suite_id: int) -> None:
    cs = cipher_suite(suite_id)
    priv, pub = cs.derive_key_pair(b"path secret of " + bytes([suite_id]))
    assert (priv, pub) == cs.derive_key_pair(b"path secret of " + bytes([suite_id]))
    kem_output, ct = cs.encrypt_with_label(pub, b"UpdatePathNode", b"group context", b"path secret", _rng(b"e"))
    parsed = cs.hpke_private_key(priv)
    assert cs.decrypt_with_label(parsed, b"UpdatePathNode", b"group context", kem_output, ct) == b"path secret"
    assert cs.decrypt_with_label(priv, b"UpdatePathNode", b"group context", kem_output, ct) == b"path secret"
    for label, context, kem_out, ciphertext in (
        (b"Welcome", b"group context", kem_output, ct),
        (b"UpdatePathNode", b"group contexT", kem_output, ct),
        (b"UpdatePathNode", b"group context", kem_output[:-1] + bytes([kem_output[-1] ^ 1]), ct),
        (b"UpdatePathNode", b"group context", kem_output, ct[:-1] + bytes([ct[-1] ^ 1])),
        (b"UpdatePathNode", b"group context", kem_output[:-1], ct),
        (b"UpdatePathNode", b"group context", kem_output, b""),
    ):
        with pytest.raises(DecryptError):
            cs.decrypt_with_label(parsed, label, context, kem_out, ciphertext)
    other_priv, _ = cs.hpke_key_pair(_rng(b"other"))
    with pytest.raises(DecryptError):
        cs.decrypt_with_label(other_priv, b"UpdatePathNode", b"group context", kem_output, ct)
    with pytest.raises(RemoteProtocolError):
        cs.encrypt_with_label(pub[:-1], b"UpdatePathNode", b"", b"pt", _rng(b"e"))


@pytest.mark.parametrize("suite_id", SUITE_IDS)
def test_aead(suite_id: int) -> None:
    cs: CipherSuite = cipher_suite(suite_id)
    key, nonce = bytes(cs.nk), bytes(cs.nn)
    ct = cs.seal(key, nonce, b"aad", b"application data")
    assert cs.open(key, nonce, b"aad", ct) == b"application data"
    for args in ((key, nonce, b"aaD", ct), (key, b"\x01" + nonce[1:], b"aad", ct), (key, nonce, b"aad", ct[1:])):
        with pytest.raises(DecryptError):
            cs.open(*args)


def test_out_of_range_lengths_are_a_local_error() -> None:
    from sonet.core.errors import LocalProtocolError

    cs = cipher_suite(1)
    for length in (-1, 0x10000):
        with pytest.raises(LocalProtocolError):
            cs.expand_with_label(bytes(32), b"x", b"", length)
    with pytest.raises(LocalProtocolError):
        cs.expand_with_label(bytes(32), b"x", b"", 255 * 32 + 1)  # over HKDF's limit
    for generation in (-1, 1 << 32):
        with pytest.raises(LocalProtocolError):
            cs.derive_tree_secret(bytes(32), b"key", generation, 16)
    assert len(cs.expand_with_label(bytes(32), b"x", b"", 255 * 32)) == 255 * 32  # many blocks
