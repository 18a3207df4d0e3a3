"""MLS cipher suites 1-7 and 0x004D (X-Wing): hash, KDF and the labeled operations of RFC 9420
§5 (ExpandWithLabel, DeriveSecret, DeriveTreeSecret, RefHash, SignWithLabel, EncryptWithLabel),
over the primitives of core/crypto/ (``rfc9180``: HPKE; ``mls_sign``: signatures)."""

from .cipher_suite import SUITE_IDS, CipherSuite, cipher_suite

__all__ = ["CipherSuite", "SUITE_IDS", "cipher_suite"]
