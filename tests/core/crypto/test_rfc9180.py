"""core/crypto/rfc9180.py, our own RFC 9180 HPKE, against the RFC's vectors (every base- and
PSK-mode case whose AEAD is not export-only: DeriveKeyPair, encapsulation, key schedule, every
encryption, every export), the draft-ietf-hpke-pq X-Wing vectors and the X-Wing draft's KEM
vectors; then tampering and malformed input."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from sonet.core.crypto.kdf import shake256
from sonet.core.crypto.rfc9180 import KEMS, MODE_BASE, MODE_PSK, Kdf, KemPrivateKey, _EcDhKem, hpke_suite
from sonet.core.errors import DecryptError, LocalProtocolError, RemoteProtocolError
from tests.vectors import load_json, unhex

EXPORT_ONLY = 0xFFFF


def _rfc_cases(modes: tuple[int, ...]) -> list[dict[str, Any]]:
    return [v for v in load_json("hpke-rfc9180/test-vectors.json") if v["mode"] in modes and v["aead_id"] != EXPORT_ONLY]


def _psk(v: dict[str, Any]) -> tuple[bytes, bytes]:
    return unhex(v.get("psk")), unhex(v.get("psk_id"))


def test_derive_key_pair_gives_every_vector_key() -> None:
    """DeriveKeyPair(ikmR/ikmE/ikmS) in every case of every mode (auth modes too: only the keys)."""
    seen: Counter[int] = Counter()
    for v in load_json("hpke-rfc9180/test-vectors.json"):
        kem = KEMS[v["kem_id"]]
        for who in ("R", "E", "S"):
            if f"ikm{who}" in v:
                assert kem.derive_key_pair(unhex(v[f"ikm{who}"])) == (unhex(v[f"sk{who}m"]), unhex(v[f"pk{who}m"]))
        seen[v["kem_id"]] += 1
    # the RFC file has no P-384 case; P-384's order is checked below and through MLS suite 7
    assert set(seen) == {0x0010, 0x0012, 0x0020, 0x0021}


def test_rfc9180_base_and_psk_vectors() -> None:
    seen: Counter[tuple[int, int]] = Counter()
    for v in _rfc_cases((MODE_BASE, MODE_PSK)):
        suite = hpke_suite(v["kem_id"], v["kdf_id"], v["aead_id"])
        info, psk_args = unhex(v["info"]), dict(zip(("psk", "psk_id"), _psk(v), strict=True))
        enc, sender = suite.setup_sender(unhex(v["pkRm"]), info, ikm_e=unhex(v["ikmE"]), **psk_args)
        assert enc == unhex(v["enc"])
        assert suite.kem.decap(enc, unhex(v["skRm"])) == unhex(v["shared_secret"])
        assert (sender.key, sender.base_nonce, sender.exporter_secret) == (
            unhex(v["key"]),
            unhex(v["base_nonce"]),
            unhex(v["exporter_secret"]),
        )
        receiver = suite.setup_receiver(enc, unhex(v["skRm"]), info, **psk_args)
        for e in v["encryptions"]:
            aad, pt, ct = unhex(e["aad"]), unhex(e["pt"]), unhex(e["ct"])
            assert sender.seal(aad, pt) == ct
            assert receiver.open(aad, ct) == pt
        for x in v["exports"]:
            assert sender.export(unhex(x["exporter_context"]), x["L"]) == unhex(x["exported_value"])
        # single-shot with the first encryption (sequence number 0)
        e0 = v["encryptions"][0]
        ikm_e = unhex(v["ikmE"])
        assert suite.seal(unhex(v["pkRm"]), info, unhex(e0["aad"]), unhex(e0["pt"]), ikm_e=ikm_e, **psk_args) == (
            enc,
            unhex(e0["ct"]),
        )
        assert suite.open(enc, unhex(v["skRm"]), info, unhex(e0["aad"]), unhex(e0["ct"]), **psk_args) == unhex(e0["pt"])
        seen[(v["mode"], v["kem_id"])] += 1
    # both modes of X25519, X448, P-256 and P-521, each with the 2 KDFs x 3 AEADs of the file
    assert seen == {(m, k): 6 for m in (MODE_BASE, MODE_PSK) for k in (0x0010, 0x0012, 0x0020, 0x0021)}


def _flip(data: bytes, i: int) -> bytes:
    b = bytearray(data)
    b[i] ^= 0x01
    return bytes(b)


def test_tampered_ciphertext_enc_aad_info_or_psk_fail() -> None:
    for v in _rfc_cases((MODE_BASE, MODE_PSK)):
        suite = hpke_suite(v["kem_id"], v["kdf_id"], v["aead_id"])
        info, (psk, psk_id) = unhex(v["info"]), _psk(v)
        enc, sk = unhex(v["enc"]), unhex(v["skRm"])
        e0 = v["encryptions"][0]
        aad, ct = unhex(e0["aad"]), unhex(e0["ct"])
        assert suite.open(enc, sk, info, aad, ct, psk=psk, psk_id=psk_id) == unhex(e0["pt"])
        bad = [
            (enc, info, aad, _flip(ct, 0), psk),  # ciphertext
            (enc, info, aad, _flip(ct, len(ct) - 1), psk),  # tag
            (enc, info, aad, ct[:-1], psk),  # truncated
            (enc, info, aad, ct[:15], psk),  # shorter than a tag
            (_flip(enc, len(enc) - 1), info, aad, ct, psk),  # enc (a P-curve point off the curve, or another X key)
            (enc[:-1], info, aad, ct, psk),  # enc of the wrong length
            (enc, info, aad + b"!", ct, psk),  # aad
            (enc, info + b"!", aad, ct, psk),  # info
        ]
        if psk:
            bad.append((enc, info, aad, ct, _flip(psk, 0)))
        for b_enc, b_info, b_aad, b_ct, b_psk in bad:
            with pytest.raises(DecryptError):
                suite.open(b_enc, sk, b_info, b_aad, b_ct, psk=b_psk, psk_id=psk_id)


def test_context_open_failure_keeps_the_sequence_number() -> None:
    v = _rfc_cases((MODE_BASE,))[0]
    suite = hpke_suite(v["kem_id"], v["kdf_id"], v["aead_id"])
    receiver = suite.setup_receiver(unhex(v["enc"]), unhex(v["skRm"]), unhex(v["info"]))
    e0, e1 = v["encryptions"][:2]
    with pytest.raises(DecryptError):
        receiver.open(unhex(e0["aad"]), _flip(unhex(e0["ct"]), 3))
    assert receiver.open(unhex(e0["aad"]), unhex(e0["ct"])) == unhex(e0["pt"])
    with pytest.raises(DecryptError):  # e0 again: its nonce is used up
        receiver.open(unhex(e0["aad"]), unhex(e0["ct"]))
    assert receiver.open(unhex(e1["aad"]), unhex(e1["ct"])) == unhex(e1["pt"])


# --- X-Wing ---------------------------------------------------------------------------------

XWING = KEMS[0x647A]


def test_hpke_pq_xwing_vectors() -> None:
    cases = [v for v in load_json("hpke-pq/test-vectors.json") if v["kem_id"] == 0x647A and v["kdf_id"] in (1, 2, 3)]
    assert len(cases) == 1  # the other X-Wing case uses the SHAKE256 KDF (0x0011), not an MLS one
    for v in cases:
        suite = hpke_suite(v["kem_id"], v["kdf_id"], v["aead_id"])
        sk, pk = suite.kem.derive_key_pair(unhex(v["ikmR"]))
        assert (sk, pk) == (unhex(v["skRm"]), unhex(v["pkRm"]))
        enc, info = unhex(v["enc"]), unhex(v["info"])
        shared = suite.kem.decap(enc, sk)
        assert shared == unhex(v["shared_secret"])
        ctx = suite.key_schedule(MODE_BASE, shared, info)
        assert (ctx.key, ctx.base_nonce, ctx.exporter_secret) == (unhex(v["key"]), unhex(v["base_nonce"]), unhex(v["exporter_secret"]))
        receiver = suite.setup_receiver(enc, sk, info)
        for e in v["encryptions"]:
            assert ctx.seal(unhex(e["aad"]), unhex(e["pt"])) == unhex(e["ct"])
            assert receiver.open(unhex(e["aad"]), unhex(e["ct"])) == unhex(e["pt"])
        for x in v["exports"]:
            assert ctx.export(unhex(x["exporter_context"]), x["L"]) == unhex(x["exported_value"])
        # our encapsulation with the vector's ikmE: the X25519 half is the vector's (the ML-KEM
        # half's randomness comes from OpenSSL), and the result opens
        ours, ct = suite.seal(pk, info, b"aad", b"plaintext", ikm_e=unhex(v["ikmE"]))
        assert ours[1088:] == enc[1088:]
        assert suite.open(ours, sk, info, b"aad", ct) == b"plaintext"
        for i in (0, 1087, 1088, 1119):  # ML-KEM ciphertext (implicit rejection), X25519 share
            with pytest.raises(DecryptError):
                suite.open(_flip(ours, i), sk, info, b"aad", ct)
        with pytest.raises(DecryptError):
            suite.open(ours[:-1], sk, info, b"aad", ct)


def test_xwing_derive_key_pair_is_the_labeled_hpke_pq_form() -> None:
    """OpenMLS's hpke-rs 0.7 derives the X-Wing seed with SHAKE256.LabeledDerive, not the plain
    SHAKE256(ikm, 32) of X-Wing draft-06 (see rfc9180.py's docstring)."""
    ikm = bytes(range(32))
    labeled = ikm + b"HPKE-v1" + b"KEM\x64\x7a" + b"\x00\x0dDeriveKeyPair" + b"\x00\x20"
    sk, _ = XWING.derive_key_pair(ikm)
    assert sk == shake256(labeled, 32)
    assert sk != shake256(ikm, 32)


def test_xwing_draft_kem_vectors() -> None:
    vectors = load_json("xwing/test-vectors.json")
    assert len(vectors) == 3
    for v in vectors:
        key = XWING.private_key(unhex(v["sk"]))
        assert key.public.raw == unhex(v["pk"])
        assert XWING.decap(unhex(v["ct"]), key) == unhex(v["ss"])
        assert XWING.decap(_flip(unhex(v["ct"]), 5), key) != unhex(v["ss"])  # ML-KEM implicit rejection


# --- determinism, randomness and malformed input ---------------------------------------------


def test_seal_with_rng_is_seal_with_the_rng_output() -> None:
    suite = hpke_suite(0x0010, 1, 1)
    _, pk = suite.kem.derive_key_pair(b"recipient" * 4)
    draws: list[int] = []

    def rng(n: int) -> bytes:
        draws.append(n)
        return b"\x07" * n

    assert suite.seal(pk, b"info", b"aad", b"pt", rng=rng) == suite.seal(pk, b"info", b"aad", b"pt", ikm_e=b"\x07" * 32)
    assert draws == [32]
    with pytest.raises(LocalProtocolError):
        suite.seal(pk, b"info", b"aad", b"pt")
    with pytest.raises(LocalProtocolError):
        suite.seal(pk, b"info", b"aad", b"pt", rng=rng, ikm_e=b"\x07" * 32)


def test_curve_orders_are_the_curves_orders() -> None:
    for kem_id in (0x0010, 0x0011, 0x0012):
        kem = KEMS[kem_id]
        ec.derive_private_key(kem.order - 1, kem.curve)  # type: ignore[attr-defined]
        with pytest.raises(ValueError):
            ec.derive_private_key(kem.order, kem.curve)  # type: ignore[attr-defined]


@pytest.mark.parametrize("kem_id", sorted(KEMS))
def test_every_kem_round_trips_and_parses_once(kem_id: int) -> None:
    kem = KEMS[kem_id]
    sk, pk = kem.derive_key_pair(b"ikm of " + bytes([kem_id & 0xFF]) * 25)
    parsed = kem.private_key(sk)
    assert isinstance(parsed, KemPrivateKey) and parsed.public.raw == pk and "secret" in repr(parsed)
    assert kem.public_key(pk) is kem.public_key(pk)  # cached
    shared, enc = kem.encap(pk, b"\x01" * kem.neseed)
    assert len(enc) == kem.nenc and len(shared) == kem.nsecret
    assert kem.decap(enc, parsed) == shared == kem.decap(enc, sk)
    with pytest.raises(LocalProtocolError):
        kem.private_key(sk + b"\x01")  # (a shorter NIST-curve scalar is another integer: read)
    with pytest.raises(RemoteProtocolError):
        kem.public_key(pk[:-1])
    with pytest.raises(DecryptError):
        kem.decap(enc + b"\x00", parsed)


def test_malformed_public_keys_are_refused() -> None:
    p256 = KEMS[0x0010]
    _, pk = p256.derive_key_pair(b"k" * 32)
    with pytest.raises(RemoteProtocolError, match="not a point of the curve"):
        p256.public_key(_flip(pk, 64))
    with pytest.raises(RemoteProtocolError, match="uncompressed"):
        p256.public_key(b"\x02" + pk[1:])
    x25519 = KEMS[0x0020]
    with pytest.raises(RemoteProtocolError, match="low-order"):  # all-zero DH output
        x25519.encap(bytes(32), b"\x01" * 32)
    with pytest.raises(RemoteProtocolError, match="X-Wing public key is malformed"):
        XWING.public_key(b"\xff" * 1216)  # ML-KEM coefficients over the modulus
    with pytest.raises(RemoteProtocolError, match="low-order"):
        XWING.encap(XWING.derive_key_pair(b"k" * 32)[1][:1184] + bytes(32), b"\x01" * 64)
    with pytest.raises(LocalProtocolError):
        KEMS[0x0010].private_key(bytes(32))  # scalar 0
    with pytest.raises(LocalProtocolError):
        KEMS[0x0010].private_key(KEMS[0x0020].private_key(bytes(range(32))))  # another KEM's key


@pytest.mark.parametrize("kem_id", [0x0010, 0x0011, 0x0012])
def test_nist_curve_private_keys_without_leading_zero_bytes_are_read(kem_id: int) -> None:
    """The IETF MLS vectors write P-521 keys of 65 bytes: the scalar is an integer, so a short
    encoding is the same key, kept as the fixed-length I2OSP(sk, Nsk)."""
    kem = KEMS[kem_id]
    full = b"\x00\x00" + bytes(range(1, kem.nsk - 1))
    short = kem.private_key(full[2:])
    assert short.raw == full
    assert short.public.raw == kem.private_key(full).public.raw
    shared, enc = kem.encap(short.public.raw, b"e" * kem.neseed)
    assert kem.decap(enc, full[1:]) == shared
    with pytest.raises(LocalProtocolError, match="must be"):
        kem.private_key(b"")
    with pytest.raises(LocalProtocolError, match="must be"):
        kem.private_key(b"\x01" + full)  # longer than the curve's scalars
    with pytest.raises(LocalProtocolError, match="out of range"):
        kem.private_key(b"\x00")  # the scalar 0, however short
    with pytest.raises(LocalProtocolError, match="must be"):
        KEMS[0x0020].private_key(bytes(range(1, 32)))  # X25519 keys are strings, not integers


def test_misuse_is_a_local_error() -> None:
    suite = hpke_suite(0x0020, 1, 1)
    with pytest.raises(LocalProtocolError):
        hpke_suite(0x0020, 1, 0xFFFF)
    with pytest.raises(LocalProtocolError):
        suite.key_schedule(MODE_PSK, bytes(32), b"", psk=b"psk")  # no psk_id
    with pytest.raises(LocalProtocolError):
        suite.key_schedule(MODE_BASE, bytes(32), b"", psk=b"psk", psk_id=b"id")
    with pytest.raises(LocalProtocolError):
        suite.kdf.expand(bytes(32), b"", 255 * 32 + 1)
    with pytest.raises(LocalProtocolError):
        suite.aead.seal(bytes(15), bytes(12), b"", b"pt")


class _ScriptedCandidates(Kdf):
    """HKDF-SHA512 whose "candidate" expansions are scripted, to walk DeriveKeyPair's loop."""

    def __init__(self, candidates: list[bytes]) -> None:
        super().__init__(3, hashes.SHA512())
        self.candidates = candidates
        self.counters: list[int] = []

    def labeled_expand(self, suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
        if label != b"candidate":
            return super().labeled_expand(suite_id, prk, label, info, length)
        self.counters.append(info[0])
        return self.candidates[info[0]]


def test_p521_derive_key_pair_masks_and_rejects_candidates() -> None:
    """§7.1.3: the top byte is masked with 0x01, and a candidate that is 0 or not below the order
    is rejected for the next counter."""
    kdf = _ScriptedCandidates(
        [
            b"\xff" * 66,  # masked to 0x01ff..ff: over the order
            b"\xfe" + bytes(65),  # masked to 0: rejected
            b"\x03" + bytes(64) + b"\x05",  # masked to 0x01 00..00 05: accepted
        ]
    )
    kem = _EcDhKem(0x0012, kdf, ec.SECP521R1(), KEMS[0x0012].order, 0x01)  # type: ignore[attr-defined]
    sk, pk = kem.derive_key_pair(b"ikm")
    assert sk == b"\x01" + bytes(64) + b"\x05" and kdf.counters == [0, 1, 2]
    assert kem.private_key(sk).public.raw == pk
