"""RFC 9180 HPKE, complete and deterministic: the KEMs, KDFs and AEADs MLS cipher suites use.

This is a separate implementation from ``hpke.py`` (which wraps ``cryptography.hazmat.primitives.hpke``
for Sonet's device keys): that module has no DeriveKeyPair, no X448, no aad, and its encapsulation
draws its own randomness. MLS needs all four, so here every algorithm is written out from the RFC
over ``cryptography``'s primitives only (X25519, X448, EC curves, ML-KEM-768, SHAKE256/SHA3-256,
HMAC, AES-GCM, ChaCha20-Poly1305).

- KEMs (§4.1, §7.1): DHKEM(P-256, HKDF-SHA256) 0x0010, DHKEM(P-384, HKDF-SHA384) 0x0011,
  DHKEM(P-521, HKDF-SHA512) 0x0012, DHKEM(X25519, HKDF-SHA256) 0x0020, DHKEM(X448, HKDF-SHA512)
  0x0021, and X-Wing (MLKEM768-X25519) 0x647A. Each has DeriveKeyPair; the P-curves use the
  rejection-sampling loop with the bitmask of §7.1.3.
- KDFs HKDF-SHA256/384/512 (0x0001-0x0003); AEADs AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305.
- The key schedule of §5.1 in mode_base and mode_psk, the Context (§5.2, sequence numbers) and the
  secret export (§5.3); single-shot ``seal``/``open`` with info and aad.

Determinism: encapsulation takes the ephemeral input keying material ``ikm_e`` (or an ``rng``
that supplies it), so a DHKEM encapsulation is a pure function of its inputs and the RFC vectors
are reproduced byte for byte. X-Wing's ML-KEM half is the one exception: ``cryptography`` offers
no derandomised ML-KEM encapsulation, so its 32-byte message ``m`` comes from OpenSSL (as in
``hpke.py``); the X25519 half still uses ``ikm_e[32:64]``.

X-Wing DeriveKeyPair. draft-connolly-cfrg-xwing-kem-06 (its HPKE section) derives the 32-byte
X-Wing seed as ``SHAKE256(ikm, 32)``; draft-ietf-hpke-pq (the HPKE registration of 0x647A,
"MLKEM768-X25519") uses ``SHAKE256.LabeledDerive(ikm, "DeriveKeyPair", "", 32)`` =
``SHAKE256(ikm || "HPKE-v1" || "KEM" || I2OSP(0x647A, 2) || I2OSP(13, 2) || "DeriveKeyPair" ||
I2OSP(32, 2), 32)``. We implement the labeled draft-ietf-hpke-pq form, because that is what
OpenMLS runs: OpenMLS (HEAD, v0.9) maps its X-Wing suite 0x004D to hpke-rs
``KemAlgorithm::XWingDraft06`` = 0x647A (traits/src/types.rs, libcrux_crypto/src/crypto.rs,
openmls_rust_crypto/src/provider.rs) and calls ``Hpke::derive_key_pair`` from
``derive_hpke_keypair``; hpke-rs 0.7.0 (Cargo.lock of OpenMLS), src/kem.rs
``pq_derive_keypair_seed``, labels the ikm exactly as above unless the non-default feature
``draft-connolly-cfrg-hpke-mlkem`` is on, and its libcrux KAT runs the draft-ietf-hpke-pq vectors
(tests/data/vectors/hpke-pq, which we pass too). That source was read from a code index, with
0.7.0's feature set per the hpke-rs changelog (draft-ietf-hpke-pq identifiers, the
draft-connolly flag); no OpenMLS build was run against ours. hpke-rs up to 0.6.1 (OpenMLS before July 2026)
used the unlabeled ``SHAKE256(ikm, 32)``: keys derived from the same path secret differ between
the two, so a group with a pre-0.7 OpenMLS peer on suite 0x004D would not interoperate.
The 32-byte seed is then expanded as in X-Wing draft-06 (``SHAKE256(seed, 96)`` -> ML-KEM-768
(d, z) and the X25519 scalar; ``hpke.xwing_private_from_seed``), which both drafts share.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x448, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..errors import DecryptError, LocalProtocolError, RemoteProtocolError
from .hpke import xwing_private_from_seed
from .kdf import sha3_256, shake256
from .modes import Rng

__all__ = [
    "AEADS",
    "AeadAlgorithm",
    "Context",
    "HpkeSuite",
    "KDFS",
    "KEMS",
    "Kdf",
    "Kem",
    "KemPrivateKey",
    "KemPublicKey",
    "MODE_BASE",
    "MODE_PSK",
    "ec_scalar_length_ok",
    "hpke_suite",
]

MODE_BASE = 0x00
MODE_PSK = 0x01
_VERSION = b"HPKE-v1"
_PUBLIC_KEY_CACHE = 4096  # parsed recipient keys kept (public data only): a 1,500-member tree fits


def _i2osp(n: int, length: int) -> bytes:
    return n.to_bytes(length, "big")


def ec_scalar_length_ok(n: int, nsk: int) -> bool:
    """Whether ``n`` bytes can encode a NIST-curve private scalar of ``nsk`` bytes (HPKE's
    DHKEM and MLS's ECDSA keys alike). The scalar is an integer: some implementations drop its
    leading zero bytes (the IETF MLS vectors write P-521 keys of 65 bytes, not 66), so shorter
    encodings are taken and read as the same integer."""
    return 0 < n <= nsk


# --- KDFs -----------------------------------------------------------------------------------


class Kdf:
    """HKDF over one hash (RFC 5869), with the labeled forms of RFC 9180 §4."""

    __slots__ = ("id", "nh", "_hash", "_hashlib", "_zeros")

    def __init__(self, kdf_id: int, hash_alg: hashes.HashAlgorithm) -> None:
        self.id = kdf_id
        self.nh = hash_alg.digest_size
        self._hash = hash_alg
        # One-shot digests through the standard library's OpenSSL binding: the same SHA-2, at a
        # quarter of the per-call cost of a cryptography Hash object (tree hashes call it a lot).
        self._hashlib = getattr(hashlib, hash_alg.name)
        self._zeros = bytes(self.nh)

    def hash_algorithm(self) -> hashes.HashAlgorithm:
        return self._hash

    def hash(self, data: bytes) -> bytes:
        return bytes(self._hashlib(data).digest())

    def mac(self, key: bytes, data: bytes) -> bytes:
        h = hmac.HMAC(key, self._hash)
        h.update(data)
        return h.finalize()

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        return self.mac(salt or self._zeros, ikm)

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        if not 0 <= length <= 255 * self.nh:
            raise LocalProtocolError(f"HKDF-Expand length {length} is over 255 * {self.nh}")
        if length <= self.nh:  # the common case: one block
            return self.mac(prk, info + b"\x01")[:length]
        out = bytearray()
        block = b""
        counter = 1
        while len(out) < length:
            block = self.mac(prk, block + info + bytes((counter,)))
            out += block
            counter += 1
        return bytes(out[:length])

    def labeled_extract(self, suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return self.extract(salt, b"".join((_VERSION, suite_id, label, ikm)))

    def labeled_expand(self, suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
        return self.expand(prk, b"".join((_i2osp(length, 2), _VERSION, suite_id, label, info)), length)


KDFS = {1: Kdf(1, hashes.SHA256()), 2: Kdf(2, hashes.SHA384()), 3: Kdf(3, hashes.SHA512())}


# --- AEADs ----------------------------------------------------------------------------------


class AeadAlgorithm:
    """One AEAD of RFC 9180 §7.3: 12-byte nonces, 16-byte tags. ``open`` failures are opaque."""

    __slots__ = ("id", "nk", "nn", "nt", "_cls")

    def __init__(self, aead_id: int, nk: int, cls: type[AESGCM] | type[ChaCha20Poly1305]) -> None:
        self.id = aead_id
        self.nk = nk
        self.nn = 12
        self.nt = 16
        self._cls = cls

    def seal(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        if len(key) != self.nk or len(nonce) != self.nn:
            raise LocalProtocolError(f"AEAD key must be {self.nk} bytes and nonce {self.nn} bytes")
        return self._cls(key).encrypt(nonce, plaintext, aad)

    def open(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        if len(key) != self.nk or len(nonce) != self.nn:
            raise LocalProtocolError(f"AEAD key must be {self.nk} bytes and nonce {self.nn} bytes")
        if len(ciphertext) < self.nt:
            raise DecryptError()
        try:
            return self._cls(key).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise DecryptError() from None


AEADS = {1: AeadAlgorithm(1, 16, AESGCM), 2: AeadAlgorithm(2, 32, AESGCM), 3: AeadAlgorithm(3, 32, ChaCha20Poly1305)}


# --- KEMs -----------------------------------------------------------------------------------


class KemPublicKey:
    """A parsed, validated KEM public key: ``raw`` is its serialisation (pkXm)."""

    __slots__ = ("kem_id", "raw", "key")

    def __init__(self, kem_id: int, raw: bytes, key: Any) -> None:
        self.kem_id = kem_id
        self.raw = raw
        self.key = key

    def __repr__(self) -> str:
        return f"KemPublicKey(0x{self.kem_id:04x}, {self.raw[:8].hex()}...)"


class KemPrivateKey:
    """A parsed KEM private key and its public key. Parse once, use for many decapsulations."""

    __slots__ = ("kem_id", "raw", "key", "public")

    def __init__(self, kem_id: int, raw: bytes, key: Any, public: KemPublicKey) -> None:
        self.kem_id = kem_id
        self.raw = raw
        self.key = key
        self.public = public

    def __repr__(self) -> str:  # never show key material
        return f"KemPrivateKey(0x{self.kem_id:04x}, <secret>)"


class Kem:
    """A KEM of RFC 9180 §4: sizes, DeriveKeyPair, (de)serialisation, Encap and Decap."""

    id: int
    nsecret: int  # shared secret
    nenc: int  # encapsulated key
    npk: int  # serialised public key
    nsk: int  # serialised private key
    neseed: int  # ephemeral input keying material one encapsulation takes

    def __init__(self) -> None:
        self.suite_id = b"KEM" + _i2osp(self.id, 2)
        # A bounded cache of parsed recipient keys: encrypting to the same tree node again must
        # not parse (and for the P-curves, validate) the point again.
        self._public_cached = functools.lru_cache(maxsize=_PUBLIC_KEY_CACHE)(self._parse_public)

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """DeriveKeyPair(ikm) -> (skXm, pkXm), both serialised."""
        sk = self._derive_private(ikm)
        return sk.raw, sk.public.raw

    def generate_key_pair(self, rng: Rng) -> tuple[bytes, bytes]:
        return self.derive_key_pair(rng(self.nsk))

    def private_key(self, sk: bytes | KemPrivateKey) -> KemPrivateKey:
        if isinstance(sk, KemPrivateKey):
            if sk.kem_id != self.id:
                raise LocalProtocolError(f"private key of KEM 0x{sk.kem_id:04x} used with KEM 0x{self.id:04x}")
            return sk
        if type(sk) is not bytes or not self._private_length_ok(len(sk)):
            raise LocalProtocolError(f"KEM 0x{self.id:04x} private key must be {self.nsk} bytes")
        return self._parse_private(sk)

    def public_key(self, pk: bytes | KemPublicKey) -> KemPublicKey:
        """The validated public key; a malformed one is ``RemoteProtocolError`` (it came from a peer)."""
        if isinstance(pk, KemPublicKey):
            if pk.kem_id != self.id:
                raise LocalProtocolError(f"public key of KEM 0x{pk.kem_id:04x} used with KEM 0x{self.id:04x}")
            return pk
        if type(pk) is not bytes or len(pk) != self.npk:
            raise RemoteProtocolError(f"KEM 0x{self.id:04x} public key must be {self.npk} bytes")
        return self._public_cached(pk)

    def encap(self, pk: bytes | KemPublicKey, ikm_e: bytes) -> tuple[bytes, bytes]:
        """Encap(pkR) with the ephemeral keying material ``ikm_e`` -> (shared_secret, enc)."""
        raise NotImplementedError

    def decap(self, enc: bytes, sk: bytes | KemPrivateKey) -> bytes:
        """Decap(enc, skR) -> shared_secret; any failure is the opaque ``DecryptError``."""
        raise NotImplementedError

    def _private_length_ok(self, n: int) -> bool:
        return n == self.nsk

    def _derive_private(self, ikm: bytes) -> KemPrivateKey:
        raise NotImplementedError

    def _parse_private(self, sk: bytes) -> KemPrivateKey:
        raise NotImplementedError

    def _parse_public(self, pk: bytes) -> KemPublicKey:
        raise NotImplementedError


class _DhKem(Kem):
    """DHKEM(Group, KDF) of RFC 9180 §4.1 over a Diffie-Hellman group."""

    def __init__(self, kdf: Kdf) -> None:
        super().__init__()
        self.kdf = kdf
        self.neseed = self.nsk

    def _dh(self, sk: Any, pk: Any) -> bytes:
        raise NotImplementedError

    def _extract_and_expand(self, dh: bytes, kem_context: bytes) -> bytes:
        eae_prk = self.kdf.labeled_extract(self.suite_id, b"", b"eae_prk", dh)
        return self.kdf.labeled_expand(self.suite_id, eae_prk, b"shared_secret", kem_context, self.nsecret)

    def encap(self, pk: bytes | KemPublicKey, ikm_e: bytes) -> tuple[bytes, bytes]:
        recipient = self.public_key(pk)
        eph = self._derive_private(ikm_e)
        try:
            dh = self._dh(eph.key, recipient.key)
        except ValueError:  # X25519/X448 low-order point: an all-zero shared secret
            raise RemoteProtocolError("HPKE public key is a low-order point") from None
        enc = eph.public.raw
        return self._extract_and_expand(dh, enc + recipient.raw), enc

    def decap(self, enc: bytes, sk: bytes | KemPrivateKey) -> bytes:
        recipient = self.private_key(sk)
        try:
            eph = self.public_key(enc)
            dh = self._dh(recipient.key, eph.key)
        except (RemoteProtocolError, ValueError):
            raise DecryptError() from None
        return self._extract_and_expand(dh, enc + recipient.public.raw)


class _XDhKem(_DhKem):
    """DHKEM over X25519 or X448 (§7.1.2: sk = LabeledExpand(dkp_prk, "sk", "", Nsk))."""

    def __init__(self, kem_id: int, kdf: Kdf, size: int, private_cls: Any, public_cls: Any) -> None:
        self.id = kem_id
        self.nsecret = kdf.nh
        self.nenc = self.npk = self.nsk = size
        self._private_cls = private_cls
        self._public_cls = public_cls
        super().__init__(kdf)

    def _derive_private(self, ikm: bytes) -> KemPrivateKey:
        dkp_prk = self.kdf.labeled_extract(self.suite_id, b"", b"dkp_prk", ikm)
        return self._parse_private(self.kdf.labeled_expand(self.suite_id, dkp_prk, b"sk", b"", self.nsk))

    def _parse_private(self, sk: bytes) -> KemPrivateKey:
        key = self._private_cls.from_private_bytes(sk)
        pub = key.public_key()
        return KemPrivateKey(self.id, sk, key, KemPublicKey(self.id, pub.public_bytes_raw(), pub))

    def _parse_public(self, pk: bytes) -> KemPublicKey:
        try:
            return KemPublicKey(self.id, pk, self._public_cls.from_public_bytes(pk))
        except ValueError:
            raise RemoteProtocolError(f"KEM 0x{self.id:04x} public key is malformed") from None

    def _dh(self, sk: Any, pk: Any) -> bytes:
        return bytes(sk.exchange(pk))


class _EcDhKem(_DhKem):
    """DHKEM over a NIST curve: uncompressed points, scalars as I2OSP(sk, Nsk) (§7.1.1, §7.1.3)."""

    def __init__(self, kem_id: int, kdf: Kdf, curve: ec.EllipticCurve, order: int, bitmask: int) -> None:
        self.id = kem_id
        self.nsecret = kdf.nh
        self.nsk = (curve.key_size + 7) // 8
        self.npk = self.nenc = 1 + 2 * self.nsk
        self.curve = curve
        self.order = order
        self.bitmask = bitmask
        super().__init__(kdf)

    def _derive_private(self, ikm: bytes) -> KemPrivateKey:
        dkp_prk = self.kdf.labeled_extract(self.suite_id, b"", b"dkp_prk", ikm)
        for counter in range(256):
            candidate = bytearray(self.kdf.labeled_expand(self.suite_id, dkp_prk, b"candidate", bytes((counter,)), self.nsk))
            candidate[0] &= self.bitmask
            sk = int.from_bytes(candidate, "big")
            if 0 < sk < self.order:
                return self._parse_private(bytes(candidate))
        raise LocalProtocolError("DeriveKeyPair found no valid scalar in 256 candidates")  # 2^-256 odds

    def _private_length_ok(self, n: int) -> bool:
        return ec_scalar_length_ok(n, self.nsk)

    def _parse_private(self, sk: bytes) -> KemPrivateKey:
        scalar = int.from_bytes(sk, "big")
        if not 0 < scalar < self.order:
            raise LocalProtocolError(f"KEM 0x{self.id:04x} private scalar is out of range")
        key = ec.derive_private_key(scalar, self.curve)
        pub = key.public_key()
        raw = pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        # a short encoding is kept as the fixed-length I2OSP(sk, Nsk) of §7.1.1
        return KemPrivateKey(self.id, _i2osp(scalar, self.nsk), key, KemPublicKey(self.id, raw, pub))

    def _parse_public(self, pk: bytes) -> KemPublicKey:
        if pk[0] != 0x04:
            raise RemoteProtocolError(f"KEM 0x{self.id:04x} public key is not an uncompressed point")
        try:
            return KemPublicKey(self.id, pk, ec.EllipticCurvePublicKey.from_encoded_point(self.curve, pk))
        except ValueError:
            raise RemoteProtocolError(f"KEM 0x{self.id:04x} public key is not a point of the curve") from None

    def _dh(self, sk: Any, pk: Any) -> bytes:
        return bytes(sk.exchange(ec.ECDH(), pk))


_XWING_LABEL = b"\\.//^\\"
_MLKEM768_PK = 1184
_MLKEM768_CT = 1088


class _XWingKem(Kem):
    """X-Wing (MLKEM768-X25519), HPKE KEM 0x647A; see the module docstring for DeriveKeyPair."""

    def __init__(self) -> None:
        self.id = 0x647A
        self.nsecret = 32
        self.nenc = _MLKEM768_CT + 32
        self.npk = _MLKEM768_PK + 32
        self.nsk = 32
        self.neseed = 64  # m (ML-KEM encapsulation randomness) || ephemeral X25519 scalar
        super().__init__()

    def _derive_private(self, ikm: bytes) -> KemPrivateKey:
        label = b"DeriveKeyPair"
        labeled = b"".join((ikm, _VERSION, self.suite_id, _i2osp(len(label), 2), label, _i2osp(self.nsk, 2)))
        return self._parse_private(shake256(labeled, self.nsk))

    def _parse_private(self, sk: bytes) -> KemPrivateKey:
        kem, x = xwing_private_from_seed(sk)
        kem_pub, x_pub = kem.public_key(), x.public_key()
        raw = kem_pub.public_bytes_raw() + x_pub.public_bytes_raw()
        return KemPrivateKey(self.id, sk, (kem, x), KemPublicKey(self.id, raw, (kem_pub, x_pub)))

    def _parse_public(self, pk: bytes) -> KemPublicKey:
        try:
            key = (
                mlkem.MLKEM768PublicKey.from_public_bytes(pk[:_MLKEM768_PK]),
                x25519.X25519PublicKey.from_public_bytes(pk[_MLKEM768_PK:]),
            )
        except ValueError:
            raise RemoteProtocolError("X-Wing public key is malformed") from None
        return KemPublicKey(self.id, pk, key)

    @staticmethod
    def _combine(ss_m: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
        return sha3_256(ss_m, ss_x, ct_x, pk_x, _XWING_LABEL)

    def encap(self, pk: bytes | KemPublicKey, ikm_e: bytes) -> tuple[bytes, bytes]:
        if len(ikm_e) != self.neseed:
            raise LocalProtocolError("X-Wing encapsulation takes 64 bytes of ephemeral keying material")
        recipient = self.public_key(pk)
        kem_pub, x_pub = recipient.key
        ss_m, ct_m = kem_pub.encapsulate()  # m from OpenSSL: cryptography has no derandomised form
        eph = x25519.X25519PrivateKey.from_private_bytes(ikm_e[32:64])
        ct_x = eph.public_key().public_bytes_raw()
        try:
            ss_x = eph.exchange(x_pub)
        except ValueError:
            raise RemoteProtocolError("X-Wing public key has a low-order X25519 point") from None
        return self._combine(ss_m, ss_x, ct_x, recipient.raw[_MLKEM768_PK:]), ct_m + ct_x

    def decap(self, enc: bytes, sk: bytes | KemPrivateKey) -> bytes:
        recipient = self.private_key(sk)
        if type(enc) is not bytes or len(enc) != self.nenc:
            raise DecryptError()
        kem, x = recipient.key
        ct_m, ct_x = enc[:_MLKEM768_CT], enc[_MLKEM768_CT:]
        try:
            ss_m = kem.decapsulate(ct_m)  # implicit rejection: a wrong ct gives a wrong secret
            ss_x = x.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
        except ValueError:
            raise DecryptError() from None
        return self._combine(ss_m, ss_x, ct_x, recipient.public.raw[_MLKEM768_PK:])


_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
)
_P521_ORDER = int(
    "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)
EC_ORDERS = {"secp256r1": _P256_ORDER, "secp384r1": _P384_ORDER, "secp521r1": _P521_ORDER}

KEMS: dict[int, Kem] = {
    0x0010: _EcDhKem(0x0010, KDFS[1], ec.SECP256R1(), _P256_ORDER, 0xFF),
    0x0011: _EcDhKem(0x0011, KDFS[2], ec.SECP384R1(), _P384_ORDER, 0xFF),
    0x0012: _EcDhKem(0x0012, KDFS[3], ec.SECP521R1(), _P521_ORDER, 0x01),
    0x0020: _XDhKem(0x0020, KDFS[1], 32, x25519.X25519PrivateKey, x25519.X25519PublicKey),
    0x0021: _XDhKem(0x0021, KDFS[3], 56, x448.X448PrivateKey, x448.X448PublicKey),
    0x647A: _XWingKem(),
}


# --- the key schedule and the context -------------------------------------------------------


class Context:
    """An encryption context of §5.2: the key, the base nonce, a sequence number, the exporter."""

    __slots__ = ("_suite", "key", "base_nonce", "exporter_secret", "seq")

    def __init__(self, suite: HpkeSuite, key: bytes, base_nonce: bytes, exporter_secret: bytes) -> None:
        self._suite = suite
        self.key = key
        self.base_nonce = base_nonce
        self.exporter_secret = exporter_secret
        self.seq = 0

    def _nonce(self) -> bytes:
        if self.seq >= (1 << (8 * self._suite.aead.nn)) - 1:
            raise LocalProtocolError("HPKE message limit reached")
        seq = self.seq.to_bytes(self._suite.aead.nn, "big")
        return bytes(a ^ b for a, b in zip(self.base_nonce, seq, strict=True))

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        ct = self._suite.aead.seal(self.key, self._nonce(), aad, plaintext)
        self.seq += 1
        return ct

    def open(self, aad: bytes, ciphertext: bytes) -> bytes:
        pt = self._suite.aead.open(self.key, self._nonce(), aad, ciphertext)
        self.seq += 1  # only after success (§5.2)
        return pt

    def export(self, exporter_context: bytes, length: int) -> bytes:
        return self._suite.kdf.labeled_expand(self._suite.suite_id, self.exporter_secret, b"sec", exporter_context, length)

    def __repr__(self) -> str:
        return "Context(<secret>)"


#: an HPKE info this long is public data that is sealed to many recipients (see _info_hash)
_BIG_INFO = 4096


class HpkeSuite:
    """One (KEM, KDF, AEAD) combination: the key schedule, setup and single-shot seal/open."""

    __slots__ = ("kem", "kdf", "aead", "suite_id", "_big_info")

    def __init__(self, kem_id: int, kdf_id: int, aead_id: int) -> None:
        try:
            self.kem, self.kdf, self.aead = KEMS[kem_id], KDFS[kdf_id], AEADS[aead_id]
        except KeyError:
            raise LocalProtocolError(f"unsupported HPKE suite KEM 0x{kem_id:04x} KDF 0x{kdf_id:04x} AEAD 0x{aead_id:04x}") from None
        self.suite_id = b"HPKE" + _i2osp(kem_id, 2) + _i2osp(kdf_id, 2) + _i2osp(aead_id, 2)
        #: (info, its info_hash) of the last info of at least _BIG_INFO bytes
        self._big_info: tuple[bytes, bytes] | None = None

    def _info_hash(self, info: bytes) -> bytes:
        # MLS seals a Welcome's GroupSecrets to every new member with the same info, the
        # encrypted GroupInfo (megabytes with the ratchet tree): hash it once, not per member.
        memo = self._big_info
        if memo is not None and (memo[0] is info or memo[0] == info):
            return memo[1]
        value = self.kdf.labeled_extract(self.suite_id, b"", b"info_hash", info)
        if len(info) >= _BIG_INFO:
            self._big_info = (bytes(info), value)
        return value

    def key_schedule(self, mode: int, shared_secret: bytes, info: bytes, psk: bytes = b"", psk_id: bytes = b"") -> Context:
        if mode == MODE_BASE:
            if psk or psk_id:
                raise LocalProtocolError("HPKE base mode takes no PSK")
        elif mode == MODE_PSK:
            if not psk or not psk_id:
                raise LocalProtocolError("HPKE PSK mode needs both a PSK and a PSK id")
        else:
            raise LocalProtocolError(f"unsupported HPKE mode {mode}")
        kdf, sid = self.kdf, self.suite_id
        psk_id_hash = kdf.labeled_extract(sid, b"", b"psk_id_hash", psk_id)
        info_hash = self._info_hash(info)
        context = bytes((mode,)) + psk_id_hash + info_hash
        secret = kdf.labeled_extract(sid, shared_secret, b"secret", psk)
        return Context(
            self,
            kdf.labeled_expand(sid, secret, b"key", context, self.aead.nk),
            kdf.labeled_expand(sid, secret, b"base_nonce", context, self.aead.nn),
            kdf.labeled_expand(sid, secret, b"exp", context, kdf.nh),
        )

    def _ikm_e(self, rng: Rng | None, ikm_e: bytes | None) -> bytes:
        if (rng is None) == (ikm_e is None):
            raise LocalProtocolError("HPKE encapsulation needs exactly one of rng and ikm_e")
        return ikm_e if ikm_e is not None else rng(self.kem.neseed)  # type: ignore[misc]

    def setup_sender(
        self,
        pk: bytes | KemPublicKey,
        info: bytes,
        *,
        rng: Rng | None = None,
        ikm_e: bytes | None = None,
        psk: bytes = b"",
        psk_id: bytes = b"",
    ) -> tuple[bytes, Context]:
        shared_secret, enc = self.kem.encap(pk, self._ikm_e(rng, ikm_e))
        return enc, self.key_schedule(MODE_PSK if psk else MODE_BASE, shared_secret, info, psk, psk_id)

    def setup_receiver(
        self, enc: bytes, sk: bytes | KemPrivateKey, info: bytes, *, psk: bytes = b"", psk_id: bytes = b""
    ) -> Context:
        shared_secret = self.kem.decap(enc, sk)
        return self.key_schedule(MODE_PSK if psk else MODE_BASE, shared_secret, info, psk, psk_id)

    def seal(
        self,
        pk: bytes | KemPublicKey,
        info: bytes,
        aad: bytes,
        plaintext: bytes,
        *,
        rng: Rng | None = None,
        ikm_e: bytes | None = None,
        psk: bytes = b"",
        psk_id: bytes = b"",
    ) -> tuple[bytes, bytes]:
        """Single-shot SealBase/SealPSK -> (enc, ciphertext)."""
        enc, ctx = self.setup_sender(pk, info, rng=rng, ikm_e=ikm_e, psk=psk, psk_id=psk_id)
        return enc, ctx.seal(aad, plaintext)

    def open(
        self, enc: bytes, sk: bytes | KemPrivateKey, info: bytes, aad: bytes, ciphertext: bytes, *, psk: bytes = b"", psk_id: bytes = b""
    ) -> bytes:
        """Single-shot OpenBase/OpenPSK; anything wrong is the opaque ``DecryptError``."""
        return self.setup_receiver(enc, sk, info, psk=psk, psk_id=psk_id).open(aad, ciphertext)


@functools.cache
def hpke_suite(kem_id: int, kdf_id: int, aead_id: int) -> HpkeSuite:
    return HpkeSuite(kem_id, kdf_id, aead_id)
