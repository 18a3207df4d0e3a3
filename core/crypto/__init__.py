"""The only place that touches cryptography.hazmat, nacl or pqcrypto."""

from .aead import Aead
from .dh import MlKemKeyPair, X25519KeyPair, check_mlkem_public, mlkem_encapsulate
from .hpke import HpkePrivateKey, HpkePublicKey
from .kdf import ct_equal, hkdf, hkdf_expand, hmac_sha256, hmac_sha256_pair, sha256
from .kex import KexOffer, KexResponse, respond
from .modes import DEFAULT_MODE, CryptoMode, CryptoPolicy, Rng
from .sign import SigningKey, VerifyKey, fingerprint_of, normalize_fingerprint

__all__ = [
    "Aead",
    "CryptoMode",
    "CryptoPolicy",
    "DEFAULT_MODE",
    "HpkePrivateKey",
    "HpkePublicKey",
    "KexOffer",
    "KexResponse",
    "Rng",
    "SigningKey",
    "VerifyKey",
    "ct_equal",
    "fingerprint_of",
    "hkdf",
    "hkdf_expand",
    "hmac_sha256",
    "hmac_sha256_pair",
    "normalize_fingerprint",
    "respond",
    "sha256",
    "MlKemKeyPair",
    "X25519KeyPair",
    "check_mlkem_public",
    "mlkem_encapsulate",
]
