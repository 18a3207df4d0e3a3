"""Kind ``crypto-basics``: RefHash, ExpandWithLabel, DeriveSecret, DeriveTreeSecret,
SignWithLabel/VerifyWithLabel and EncryptWithLabel/DecryptWithLabel of one cipher suite.

Labels are the UTF-8 of the vector's strings. Beyond the format's checks, the signature and HPKE
key pairs must belong together (``pub`` is the public key of ``priv``), and our own encryption and
signature must pass the other side's check. The fresh encryption's randomness is a fixed test
seed: the check has to be a pure function of the case.
"""

from __future__ import annotations

from typing import Any

from ...crypto.kdf import shake256
from ...crypto.modes import Rng
from ..crypto import cipher_suite
from .expect import VectorMismatch, expect_equal, hex_field

__all__ = ["check"]


def _label(part: dict[str, Any]) -> bytes:
    label = part["label"]
    if not isinstance(label, str):
        raise VectorMismatch(f"label: expected a string, got {type(label).__name__}")
    return label.encode()


def _test_rng(seed: bytes) -> Rng:
    """Deterministic bytes for our own encryption (SHAKE-256 of a per-case seed; not secret)."""
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        counter += 1
        return shake256(seed + counter.to_bytes(4, "big"), n)

    return rng


def check(case: dict[str, Any]) -> None:
    cs = cipher_suite(case["cipher_suite"])

    r = case["ref_hash"]
    expect_equal("ref_hash", cs.ref_hash(_label(r), hex_field(r, "value")), hex_field(r, "out"))

    e = case["expand_with_label"]
    out = cs.expand_with_label(hex_field(e, "secret"), _label(e), hex_field(e, "context"), e["length"])
    expect_equal("expand_with_label", out, hex_field(e, "out"))

    d = case["derive_secret"]
    expect_equal("derive_secret", cs.derive_secret(hex_field(d, "secret"), _label(d)), hex_field(d, "out"))

    t = case["derive_tree_secret"]
    out = cs.derive_tree_secret(hex_field(t, "secret"), _label(t), t["generation"], t["length"])
    expect_equal("derive_tree_secret", out, hex_field(t, "out"))

    s = case["sign_with_label"]
    priv, pub, content, label = hex_field(s, "priv"), hex_field(s, "pub"), hex_field(s, "content"), _label(s)
    expect_equal("sign_with_label pub of priv", cs.signature_public_key(priv), pub)
    if not cs.verify_with_label(pub, label, content, hex_field(s, "signature")):
        raise VectorMismatch("sign_with_label: the vector's signature does not verify")
    if not cs.verify_with_label(pub, label, content, cs.sign_with_label(priv, label, content)):
        raise VectorMismatch("sign_with_label: our signature does not verify")

    x = case["encrypt_with_label"]
    priv, pub, label, context = hex_field(x, "priv"), hex_field(x, "pub"), _label(x), hex_field(x, "context")
    plaintext = hex_field(x, "plaintext")
    expect_equal("encrypt_with_label pub of priv", cs.hpke_private_key(priv).public.raw, pub)
    got = cs.decrypt_with_label(priv, label, context, hex_field(x, "kem_output"), hex_field(x, "ciphertext"))
    expect_equal("decrypt_with_label of the vector", got, plaintext)
    kem_output, ciphertext = cs.encrypt_with_label(pub, label, context, plaintext, _test_rng(priv + context))
    expect_equal("decrypt_with_label of ours", cs.decrypt_with_label(priv, label, context, kem_output, ciphertext), plaintext)
