"""NIST ACVP ML-KEM-768 (FIPS 203) and ML-DSA-65 (FIPS 204) sample vectors (circl's copy).

- ML-KEM keyGen: ek from (d, z) through ``cryptography`` and ``HpkePrivateKey(CryptoMode.PQ)``.
- ML-KEM encapDecap: the encapsulation cases (AFT) need the randomness m, which neither
  ``cryptography`` nor ``pqcrypto`` can take; only their ek is checked (accepted by our
  ``HpkePublicKey``). The decapsulation cases (VAL) give an expanded 2400-byte dk, which
  ``cryptography`` cannot load (seeds only), so they run through ``pqcrypto`` (PQClean), whose
  secret keys are the FIPS 203 dk encoding.
- ML-DSA keyGen: pk from the 32-byte seed through ``cryptography``.
- ML-DSA sigGen: ``cryptography`` cannot sign deterministically (nor take rnd), and these early
  ACVP vectors are Sign_internal with no context. Their signatures are VERIFIED instead, with
  ``verify_mu`` and mu = SHAKE256(SHAKE256(pk, 64) || M, 64). The prompt gives only the expanded
  private key, so pk is re-derived from it by the test oracle in ``_mldsa_ref`` (which checks its
  result against tr inside that key, and which the keyGen test below cross-checks).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem
from pqcrypto.kem import ml_kem_768 as pq_kem

from sonet.core.crypto.hpke import HpkePrivateKey, HpkePublicKey
from sonet.core.crypto.modes import CryptoMode
from tests.core.crypto._mldsa_ref import public_from_expanded
from tests.vectors import load_json, unhex


def _cases(kind: str, param: str) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(prompt group, prompt test, expected test) triples of nist-acvp/<kind>/<param>-*.json."""
    prompt = load_json(f"nist-acvp/{kind}/{param}-prompt.json")
    expected = load_json(f"nist-acvp/{kind}/{param}-expectedResults.json")
    answers = {t["tcId"]: t for g in expected["testGroups"] for t in g["tests"]}
    out = []
    for group in prompt["testGroups"]:
        assert group["parameterSet"] == param
        for t in group["tests"]:
            out.append((group, t, answers[t["tcId"]]))
    return out


def test_acvp_mlkem_768_keygen() -> None:
    cases = _cases("ML-KEM-keyGen-FIPS203", "ML-KEM-768")
    for _, t, want in cases:
        seed = unhex(t["d"]) + unhex(t["z"])
        ek = unhex(want["ek"])
        assert mlkem.MLKEM768PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw() == ek, t["tcId"]
        assert HpkePrivateKey(CryptoMode.PQ, seed).public.raw == ek, t["tcId"]
        # The expected dk (FIPS 203 expanded form) works in the independent implementation.
        ct, ss = pq_kem.encaps(ek)
        assert pq_kem.decaps(unhex(want["dk"]), ct) == ss
    assert len(cases) == 25


def test_acvp_mlkem_768_encap_decap() -> None:
    enc = dec = 0
    for group, t, want in _cases("ML-KEM-encapDecap-FIPS203", "ML-KEM-768"):
        if group["function"] == "encapsulation":
            # c and k need m (derandomised encaps): not injectable; the key must be accepted.
            ek = unhex(t["ek"])
            assert HpkePublicKey(CryptoMode.PQ, ek).raw == ek
            assert len(unhex(want["c"])) == 1088 and len(unhex(want["k"])) == 32
            enc += 1
        else:
            assert group["function"] == "decapsulation" and group["testType"] == "VAL"
            assert pq_kem.decaps(unhex(group["dk"]), unhex(t["c"])) == unhex(want["k"]), t["tcId"]
            dec += 1
    assert (enc, dec) == (25, 10)


def test_acvp_mldsa_65_keygen() -> None:
    cases = _cases("ML-DSA-keyGen-FIPS204", "ML-DSA-65")
    for _, t, want in cases:
        pk = unhex(want["pk"])
        assert mldsa.MLDSA65PrivateKey.from_seed_bytes(unhex(t["seed"])).public_key().public_bytes_raw() == pk
        assert public_from_expanded(unhex(want["sk"])) == pk  # cross-checks the sigGen oracle
    assert len(cases) == 25


def test_acvp_mldsa_65_siggen_signatures_verify() -> None:
    seen = {"deterministic": 0, "hedged": 0}
    for group, t, want in _cases("ML-DSA-sigGen-FIPS204", "ML-DSA-65"):
        pk = public_from_expanded(unhex(t["sk"]))
        pub = mldsa.MLDSA65PublicKey.from_public_bytes(pk)
        msg, sig = unhex(t["message"]), unhex(want["signature"])
        mu = hashlib.shake_256(hashlib.shake_256(pk).digest(64) + msg).digest(64)  # Sign_internal: M' = M
        pub.verify_mu(sig, mu)
        flipped = bytearray(sig)
        flipped[100] ^= 0x01
        with pytest.raises(InvalidSignature):
            pub.verify_mu(bytes(flipped), mu)
        with pytest.raises(InvalidSignature):  # external ML-DSA prefixes 0 || len(ctx): no match
            pub.verify(sig, msg)
        seen["deterministic" if group["deterministic"] is True else "hedged"] += 1
    assert seen == {"deterministic": 10, "hedged": 10}
