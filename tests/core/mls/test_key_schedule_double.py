"""A private test double of helper B's ``CipherSuite`` for suite 1 only
(MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519), from hashlib/hmac and X25519, so the key
schedule, PSK and secret-tree tests run while core/mls/crypto/ is being written. It is checked
here against the suite-1 cases of the crypto-basics vectors, so the tests built on it test
against RFC 9420, not against itself. Not a production implementation: tests only.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.vectors import load_json


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


class Suite1Double:
    id = 1
    nh = 32
    nk = 16
    nn = 12
    npk = 32

    def hash(self, data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        return _extract(salt, ikm)

    def expand(self, prk: bytes, info: bytes, n: int) -> bytes:
        return _expand(prk, info, n)

    def expand_with_label(self, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
        full = b"MLS 1.0 " + label
        info = length.to_bytes(2, "big") + _varint(len(full)) + full + _varint(len(context)) + context
        return _expand(secret, info, length)

    def derive_secret(self, secret: bytes, label: bytes) -> bytes:
        return self.expand_with_label(secret, label, b"", self.nh)

    def derive_tree_secret(self, secret: bytes, label: bytes, generation: int, length: int) -> bytes:
        return self.expand_with_label(secret, label, generation.to_bytes(4, "big"), length)

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """RFC 9180 DeriveKeyPair of DHKEM(X25519, HKDF-SHA256)."""
        suite_id = b"KEM" + (0x0020).to_bytes(2, "big")
        prk = _extract(b"", b"HPKE-v1" + suite_id + b"dkp_prk" + ikm)
        sk = _expand(prk, (32).to_bytes(2, "big") + b"HPKE-v1" + suite_id + b"sk", 32)
        pub = X25519PrivateKey.from_private_bytes(sk).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return sk, pub


def _varint(n: int) -> bytes:
    assert n < 1 << 14
    return bytes([n]) if n < 64 else (0x4000 | n).to_bytes(2, "big")


SUITE1 = Suite1Double()


def test_the_double_matches_the_suite_1_crypto_basics_vectors() -> None:
    cases = [c for c in load_json("mls/crypto-basics.json") if c["cipher_suite"] == 1]
    assert cases
    for case in cases:
        e = case["expand_with_label"]
        assert SUITE1.expand_with_label(
            bytes.fromhex(e["secret"]), e["label"].encode(), bytes.fromhex(e["context"]), e["length"]
        ) == bytes.fromhex(e["out"])
        d = case["derive_secret"]
        assert SUITE1.derive_secret(bytes.fromhex(d["secret"]), d["label"].encode()) == bytes.fromhex(d["out"])
        t = case["derive_tree_secret"]
        assert SUITE1.derive_tree_secret(
            bytes.fromhex(t["secret"]), t["label"].encode(), t["generation"], t["length"]
        ) == bytes.fromhex(t["out"])
        k = case["encrypt_with_label"]
        assert X25519PrivateKey.from_private_bytes(bytes.fromhex(k["priv"])).public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw
        ) == bytes.fromhex(k["pub"])
