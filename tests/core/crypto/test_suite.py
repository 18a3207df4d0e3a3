"""Unit tests of our own crypto API: modes and policy, identity signatures, HPKE, key agreement,
fingerprints."""

from __future__ import annotations

import random

import cbor2
import pytest

from sonet.core import canonical
from sonet.core.crypto import kex
from sonet.core.crypto.hpke import HpkePrivateKey, HpkePublicKey
from sonet.core.crypto.kex import KexOffer, respond
from sonet.core.crypto.modes import DEFAULT_MODE, CryptoMode, CryptoPolicy
from sonet.core.crypto.sign import SigningKey, VerifyKey, fingerprint_of, normalize_fingerprint, signature_length
from sonet.core.errors import DecryptError, LocalProtocolError, ProtocolError, RemoteProtocolError, VerifyError

MODES = list(CryptoMode)
C, H, P = CryptoMode.CLASSICAL, CryptoMode.HYBRID, CryptoMode.PQ
LABEL = b"test-label"
# Low-order X25519 points (RFC 7748 / Wycheproof): 0, 1, and a point of order 8.
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


def rng_for(seed: object):
    return random.Random(str(seed)).randbytes


# --- modes and policy -----------------------------------------------------------------------


def test_mode_ranks_and_components() -> None:
    assert [m.rank for m in (C, H, P)] == [0, 1, 2]
    assert DEFAULT_MODE is H
    assert (C.uses_classical, C.uses_pq) == (True, False)
    assert (H.uses_classical, H.uses_pq) == (True, True)
    assert (P.uses_classical, P.uses_pq) == (False, True)


def test_mode_parse() -> None:
    for m in MODES:
        assert CryptoMode.parse(m.value) is m
    for bad in ("Hybrid", "", "quantum", None, 1, b"hybrid", ["pq"]):
        with pytest.raises(RemoteProtocolError):
            CryptoMode.parse(bad)
        with pytest.raises(LocalProtocolError):
            CryptoMode.parse(bad, remote=False)


def test_policy_defaults_and_offer() -> None:
    default = CryptoPolicy()
    assert (default.minimum, default.preferred) == (H, H)
    assert default.offer() == [H, P]
    assert [default.accepts(m) for m in (C, H, P)] == [False, True, True]

    lenient = CryptoPolicy(C)
    assert lenient.preferred is H  # never prefers less than the default on its own
    assert lenient.offer() == [H, P, C]
    assert all(lenient.accepts(m) for m in MODES)

    assert CryptoPolicy(C, C).offer() == [C, P, H]
    assert CryptoPolicy(H, P).offer() == [P, H]

    strict = CryptoPolicy(P)
    assert (strict.preferred, strict.offer()) == (P, [P])
    assert [strict.accepts(m) for m in (C, H, P)] == [False, False, True]


def test_policy_require_and_invalid() -> None:
    with pytest.raises(LocalProtocolError):
        CryptoPolicy(H, C)
    with pytest.raises(LocalProtocolError):
        CryptoPolicy(P, H)
    policy = CryptoPolicy(H)
    policy.require(H, "peer")
    policy.require(P, "peer")
    with pytest.raises(RemoteProtocolError) as info:
        policy.require(C, "peer")
    assert info.value.code == "crypto_mode_refused"
    assert "classical" in str(info.value) and "hybrid" in str(info.value)


# --- identity signatures --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_sign_verify_round_trip(mode: CryptoMode) -> None:
    key = SigningKey.generate(mode, rng_for(mode))
    for msg in (b"", b"hello", bytes(5000)):
        sig = key.sign(LABEL, msg)
        assert len(sig) == signature_length(mode)
        key.public.verify(LABEL, msg, sig)
        with pytest.raises(VerifyError):
            key.public.verify(LABEL, msg + b"!", sig)
    assert signature_length(mode) == {C: 64, H: 64 + 3309, P: 3309}[mode]


@pytest.mark.parametrize("mode", MODES)
def test_signature_rejections(mode: CryptoMode) -> None:
    key = SigningKey.generate(mode, rng_for(("rej", mode)))
    other = SigningKey.generate(mode, rng_for(("other", mode)))
    sig = key.sign(LABEL, b"msg")
    with pytest.raises(VerifyError):
        other.public.verify(LABEL, b"msg", sig)
    for bad in (sig[:-1], sig + b"\x00", b"", bytearray(sig), None):
        with pytest.raises(VerifyError):
            key.public.verify(LABEL, b"msg", bad)  # type: ignore[arg-type]
    for pos in (0, len(sig) // 2, len(sig) - 1):
        flipped = bytearray(sig)
        flipped[pos] ^= 0x10
        with pytest.raises(VerifyError):
            key.public.verify(LABEL, b"msg", bytes(flipped))


@pytest.mark.parametrize("mode", MODES)
def test_label_separation(mode: CryptoMode) -> None:
    key = SigningKey.generate(mode, rng_for(("label", mode)))
    sig = key.sign(b"label-a", b"msg")
    with pytest.raises(VerifyError):
        key.public.verify(b"label-b", b"msg", sig)
    # The label is length-prefixed: moving bytes between label and message changes M'.
    sig = key.sign(b"ab", b"cd")
    with pytest.raises(VerifyError):
        key.public.verify(b"abc", b"d", sig)
    with pytest.raises(VerifyError):
        key.public.verify(b"a", b"bcd", sig)
    for bad_label in (b"", bytes(256)):
        with pytest.raises(LocalProtocolError):
            key.sign(bad_label, b"msg")
        with pytest.raises(LocalProtocolError):
            key.public.verify(bad_label, b"msg", key.sign(LABEL, b"msg"))
    key.public.verify(bytes(255), b"m", key.sign(bytes(255), b"m"))  # longest label


def test_hybrid_needs_both_components() -> None:
    key = SigningKey.generate(H, rng_for("hybrid"))
    sig = key.sign(LABEL, b"msg")
    key.public.verify(LABEL, b"msg", sig)
    for pos in (0, 63, 64, 200, len(sig) - 1):  # Ed25519 part, then ML-DSA part
        flipped = bytearray(sig)
        flipped[pos] ^= 0x01
        with pytest.raises(VerifyError):
            key.public.verify(LABEL, b"msg", bytes(flipped))
    # Each half replaced by a valid half for another message: still refused.
    other = key.sign(LABEL, b"other")
    with pytest.raises(VerifyError):
        key.public.verify(LABEL, b"msg", other[:64] + sig[64:])
    with pytest.raises(VerifyError):
        key.public.verify(LABEL, b"msg", sig[:64] + other[64:])


def test_hybrid_signature_cannot_be_stripped() -> None:
    """Mode binding: the components of a hybrid signature do not verify as a classical or pq
    signature under the very same component keys."""
    ed_seed, ml_seed = b"\x01" * 32, b"\x02" * 32
    hybrid = SigningKey(H, ed_seed, ml_seed)
    classical = SigningKey(C, ed_seed, None)
    pq = SigningKey(P, None, ml_seed)
    hyb_pub = canonical.loads(hybrid.public.to_bytes())
    assert canonical.loads(classical.public.to_bytes())["ed25519"] == hyb_pub["ed25519"]
    assert canonical.loads(pq.public.to_bytes())["mldsa65"] == hyb_pub["mldsa65"]
    sig = hybrid.sign(LABEL, b"msg")
    with pytest.raises(VerifyError):
        classical.public.verify(LABEL, b"msg", sig[:64])
    with pytest.raises(VerifyError):
        pq.public.verify(LABEL, b"msg", sig[64:])
    # And the other way: classical + pq signatures do not make a hybrid one.
    glued = classical.sign(LABEL, b"msg") + pq.sign(LABEL, b"msg")
    with pytest.raises(VerifyError):
        hybrid.public.verify(LABEL, b"msg", glued)
    # Sanity: the component keys themselves work.
    classical.public.verify(LABEL, b"msg", classical.sign(LABEL, b"msg"))
    pq.public.verify(LABEL, b"msg", pq.sign(LABEL, b"msg"))


@pytest.mark.parametrize("mode", MODES)
def test_key_serialisation_round_trip(mode: CryptoMode) -> None:
    key = SigningKey.generate(mode, rng_for(("ser", mode)))
    assert SigningKey.generate(mode, rng_for(("ser", mode))).public == key.public  # deterministic in rng
    restored = SigningKey.from_private_bytes(key.private_bytes())
    assert restored.mode is mode and restored.public == key.public
    assert restored.private_bytes() == key.private_bytes()
    key.public.verify(LABEL, b"m", restored.sign(LABEL, b"m"))

    encoded = key.public.to_bytes()
    fields = canonical.loads(encoded)
    assert fields["mode"] == mode.value
    assert set(fields) == {"mode"} | ({"ed25519"} if mode.uses_classical else set()) | ({"mldsa65"} if mode.uses_pq else set())
    pub = VerifyKey.from_bytes(encoded)
    assert pub == key.public and hash(pub) == hash(key.public) and pub.to_bytes() == encoded
    assert pub.fingerprint == key.public.fingerprint
    pub.verify(LABEL, b"m", key.sign(LABEL, b"m"))
    assert "secret" in repr(key) and mode.value in repr(pub)


def _pub_fields(mode: CryptoMode) -> dict:
    return dict(canonical.loads(SigningKey.generate(mode, rng_for(("fields", mode))).public.to_bytes()))


def test_verify_key_rejects_wrong_components() -> None:
    c, h, p = _pub_fields(C), _pub_fields(H), _pub_fields(P)
    bad_maps = [
        {**c, "mldsa65": h["mldsa65"]},  # classical with an ML-DSA key
        {"mode": "hybrid", "ed25519": h["ed25519"]},  # hybrid missing ML-DSA
        {"mode": "hybrid", "mldsa65": h["mldsa65"]},  # hybrid missing Ed25519
        {**p, "ed25519": c["ed25519"]},  # pq with an Ed25519 key
        {**c, "extra": b""},
        {"ed25519": c["ed25519"]},  # no mode
        {**c, "mode": "quantum"},
        {**c, "mode": 1},
        {**h, "mode": "classical"},
        {"mode": "pq", "mldsa65": h["mldsa65"], "ed25519": None},
    ]
    for value in bad_maps:
        with pytest.raises(RemoteProtocolError):
            VerifyKey.from_bytes(canonical.dumps(value))


def test_verify_key_rejects_wrong_lengths_and_types() -> None:
    c, h = _pub_fields(C), _pub_fields(H)
    bad_maps = [
        {**c, "ed25519": c["ed25519"][:31]},
        {**c, "ed25519": c["ed25519"] + b"\x00"},
        {**c, "ed25519": c["ed25519"].hex()},
        {**c, "ed25519": list(c["ed25519"])},
        {**h, "mldsa65": h["mldsa65"][:-1]},
        {**h, "mldsa65": h["mldsa65"] + b"\x00"},
        {**h, "mldsa65": b""},
    ]
    for value in bad_maps:
        with pytest.raises(RemoteProtocolError):
            VerifyKey.from_bytes(canonical.dumps(value))
    for junk in (b"", b"\xff", canonical.dumps([c]), canonical.dumps("hybrid"), canonical.dumps(None)):
        with pytest.raises(RemoteProtocolError):
            VerifyKey.from_bytes(junk)


def test_verify_key_rejects_non_canonical_cbor() -> None:
    c = _pub_fields(C)
    good = canonical.dumps(c)
    assert VerifyKey.from_bytes(good).to_bytes() == good
    unsorted = cbor2.dumps({"ed25519": c["ed25519"], "mode": c["mode"]})  # canonical order: "mode" first
    assert unsorted != good and cbor2.loads(unsorted) == c
    # Non-minimal length: the 32-byte string's length in two bytes (0x59 0x0020) instead of one.
    non_minimal = good.replace(b"\x58\x20", b"\x59\x00\x20", 1)
    assert non_minimal != good and cbor2.loads(non_minimal) == c
    # Indefinite-length map.
    indefinite = b"\xbf" + good[1:] + b"\xff"
    assert cbor2.loads(indefinite) == c
    for bad in (unsorted, non_minimal, indefinite, good + b"\x00", good[:-1]):
        with pytest.raises(RemoteProtocolError):
            VerifyKey.from_bytes(bad)


def test_signing_key_rejects_malformed_private_bytes() -> None:
    seed = b"\x03" * 32
    bad_local = [
        {"mode": "classical"},  # no seed at all
        {"mode": "classical", "ed25519": seed, "mldsa65": seed},
        {"mode": "hybrid", "ed25519": seed},
        {"mode": "pq", "ed25519": seed},
        {"mode": "classical", "ed25519": seed[:31]},
        {"mode": "pq", "mldsa65": seed + b"\x00"},
        {"mode": "pq", "mldsa65": seed.hex()},
        {"mode": "nope", "ed25519": seed},
    ]
    for value in bad_local:
        with pytest.raises(LocalProtocolError):
            SigningKey.from_private_bytes(canonical.dumps(value))
    with pytest.raises(LocalProtocolError):
        SigningKey.from_private_bytes(canonical.dumps([1]))
    with pytest.raises(ProtocolError):
        SigningKey.from_private_bytes(b"\xff\x00")
    with pytest.raises(LocalProtocolError):
        SigningKey(C, None, seed)


# --- fingerprints ---------------------------------------------------------------------------


def test_fingerprint_format_and_normalisation() -> None:
    keys = [SigningKey.generate(m, rng_for(("fp", m))).public for m in MODES]
    fps = [k.fingerprint for k in keys]
    assert len(set(fps)) == 3
    for key, fp in zip(keys, fps):
        assert len(fp) == 32 and set(fp) <= set("abcdefghijklmnopqrstuvwxyz234567")
        assert fp == fingerprint_of(key.to_bytes())
        assert normalize_fingerprint(fp) == fp
        spaced = " ".join(fp[i : i + 4] for i in range(0, 32, 4)).upper()
        assert normalize_fingerprint(spaced) == fp
        assert normalize_fingerprint("-".join(fp[i : i + 8] for i in range(0, 32, 8))) == fp
        assert normalize_fingerprint(":".join(fp[i : i + 2] for i in range(0, 32, 2))) == fp
    assert fingerprint_of(b"x") != fingerprint_of(b"y")
    for bad in ("", fps[0][:-1], fps[0] + "a", fps[0][:-1] + "1", fps[0][:-1] + "0", fps[0][:-1] + "8", fps[0][:-1] + "=", fps[0][:-1] + "_"):
        with pytest.raises(LocalProtocolError):
            normalize_fingerprint(bad)


# --- HPKE -----------------------------------------------------------------------------------

ENC_LEN = {C: 32, H: 1120, P: 1088}


@pytest.mark.parametrize("mode", MODES)
def test_hpke_round_trip(mode: CryptoMode) -> None:
    priv = HpkePrivateKey.generate(mode, rng_for(("hpke", mode)))
    assert priv.public.mode is mode
    for pt in (b"", b"x", bytes(10_000)):
        sealed = priv.public.seal(pt, b"info")
        assert len(sealed) == ENC_LEN[mode] + len(pt) + 16
        assert priv.open(sealed, b"info") == pt
    assert priv.public.seal(b"same", b"info") != priv.public.seal(b"same", b"info")  # fresh encapsulation


@pytest.mark.parametrize("mode", MODES)
def test_hpke_rejections(mode: CryptoMode) -> None:
    priv = HpkePrivateKey.generate(mode, rng_for(("hpke-rej", mode)))
    other = HpkePrivateKey.generate(mode, rng_for(("hpke-other", mode)))
    sealed = priv.public.seal(b"secret message", b"purpose=test")
    with pytest.raises(DecryptError):
        priv.open(sealed, b"purpose=other")
    with pytest.raises(DecryptError):
        priv.open(sealed, b"")
    with pytest.raises(DecryptError):
        other.open(sealed, b"purpose=test")
    for pos in (0, ENC_LEN[mode] - 1, ENC_LEN[mode], len(sealed) - 1):
        tampered = bytearray(sealed)
        tampered[pos] ^= 0x01
        with pytest.raises(DecryptError):
            priv.open(bytes(tampered), b"purpose=test")
    for cut in (b"", sealed[:10], sealed[: ENC_LEN[mode]], sealed[:-1]):
        with pytest.raises(DecryptError):
            priv.open(cut, b"purpose=test")
    for wrong_mode in MODES:
        if wrong_mode is not mode:
            wrong = HpkePrivateKey.generate(wrong_mode, rng_for(("hpke-wrong", wrong_mode)))
            with pytest.raises(DecryptError):
                wrong.open(sealed, b"purpose=test")


@pytest.mark.parametrize("mode", MODES)
def test_hpke_key_serialisation(mode: CryptoMode) -> None:
    priv = HpkePrivateKey.generate(mode, rng_for(("hpke-ser", mode)))
    restored = HpkePrivateKey.from_private_bytes(priv.private_bytes())
    assert restored.public == priv.public and restored.private_bytes() == priv.private_bytes()
    assert restored.open(priv.public.seal(b"pt", b"i"), b"i") == b"pt"
    pub = HpkePublicKey.from_bytes(priv.public.to_bytes())
    assert pub == priv.public and hash(pub) == hash(priv.public)
    assert priv.open(pub.seal(b"pt", b"i"), b"i") == b"pt"
    assert "secret" in repr(priv)
    raw = priv.public.raw
    for bad in (raw[:-1], raw + b"\x00", b"", bytearray(raw)):
        with pytest.raises(RemoteProtocolError):
            HpkePublicKey(mode, bad)  # type: ignore[arg-type]
    for wrong_mode in MODES:
        if len(raw) != len(HpkePrivateKey.generate(wrong_mode, rng_for(wrong_mode)).public.raw):
            with pytest.raises(RemoteProtocolError):
                HpkePublicKey.from_bytes(canonical.dumps({"mode": wrong_mode.value, "key": raw}))
    seed = canonical.loads(priv.private_bytes())["seed"]
    with pytest.raises(LocalProtocolError):
        HpkePrivateKey(mode, seed + b"\x00")
    for bad_private in (
        canonical.dumps({"mode": mode.value}),
        canonical.dumps({"mode": mode.value, "seed": seed[:-1]}),
        canonical.dumps({"mode": "nope", "seed": seed}),
        canonical.dumps({"mode": mode.value, "seed": seed, "x": 1}),
        b"\xff",
    ):
        with pytest.raises(LocalProtocolError):
            HpkePrivateKey.from_private_bytes(bad_private)
    for bad_public in (canonical.dumps({"mode": "nope", "key": raw}), canonical.dumps({"mode": mode.value}), b""):
        with pytest.raises(RemoteProtocolError):
            HpkePublicKey.from_bytes(bad_public)


@pytest.mark.parametrize("mode", [C, H])
def test_hpke_seal_to_low_order_x25519_key_is_refused(mode: CryptoMode) -> None:
    mlkem_part = HpkePrivateKey.generate(P, rng_for("lo")).public.raw if mode is H else b""
    for point in LOW_ORDER:
        pub = HpkePublicKey(mode, mlkem_part + point)
        with pytest.raises(RemoteProtocolError):
            pub.seal(b"pt", b"info")


# --- ephemeral key agreement ----------------------------------------------------------------

SECRET_LEN = {C: 32, H: 64, P: 32}


@pytest.mark.parametrize("mode", MODES)
def test_kex_agreement(mode: CryptoMode) -> None:
    secrets = set()
    for i in range(3):
        rng = rng_for(("kex", mode, i))
        offer = KexOffer(rng)
        assert len(offer.x25519_public) == 32 and len(offer.mlkem_public) == 1184
        resp = respond(mode, rng, offer.x25519_public, offer.mlkem_public)
        assert (resp.x25519_share is not None) == mode.uses_classical
        assert (resp.mlkem_ciphertext is not None) == mode.uses_pq
        secret = offer.finish(mode, resp.x25519_share, resp.mlkem_ciphertext)
        assert secret == resp.shared_secret and len(secret) == SECRET_LEN[mode]
        secrets.add(secret)
        if mode.uses_pq:  # a modified ciphertext: implicit rejection gives another secret
            ct = bytearray(resp.mlkem_ciphertext)
            ct[0] ^= 1
            assert offer.finish(mode, resp.x25519_share, bytes(ct)) != secret
    assert len(secrets) == 3


def test_kex_hybrid_is_concatenation_of_components() -> None:
    """With the same randomness, the hybrid secret starts with the classical one."""
    def run(mode: CryptoMode) -> bytes:
        rng = rng_for("concat")
        offer = KexOffer(rng)
        return respond(mode, rng, offer.x25519_public, offer.mlkem_public).shared_secret

    assert run(H)[:32] == run(C)


@pytest.mark.parametrize("mode", MODES)
def test_kex_finish_rejects_malformed_answers(mode: CryptoMode) -> None:
    rng = rng_for(("kex-bad", mode))
    offer = KexOffer(rng)
    resp = respond(mode, rng, offer.x25519_public, offer.mlkem_public)
    share, ct = resp.x25519_share, resp.mlkem_ciphertext
    bad: list[tuple[bytes | None, bytes | None]] = []
    if mode.uses_classical:
        bad += [(None, ct), (share[:31], ct), (share + b"\x00", ct), (b"", ct)]  # type: ignore[index,operator]
        bad += [(point, ct) for point in LOW_ORDER]
    else:
        bad.append((bytes(32), ct))  # an X25519 share has no place in pq mode
    if mode.uses_pq:
        bad += [(share, None), (share, ct[:-1]), (share, ct + b"\x00"), (share, b"")]  # type: ignore[index,operator]
    else:
        bad.append((share, bytes(1088)))  # nor an ML-KEM ciphertext in classical mode
    for x_share, kem_ct in bad:
        with pytest.raises(RemoteProtocolError):
            offer.finish(mode, x_share, kem_ct)
    assert offer.finish(mode, share, ct) == resp.shared_secret  # the offer is still usable


@pytest.mark.parametrize("mode", MODES)
def test_kex_respond_rejects_malformed_offers(mode: CryptoMode) -> None:
    offer = KexOffer(rng_for(("offer", mode)))
    x_pub, kem_pub = offer.x25519_public, offer.mlkem_public
    bad: list[tuple[bytes, bytes]] = []
    if mode.uses_classical:
        bad += [(x_pub[:31], kem_pub), (x_pub + b"\x00", kem_pub), (b"", kem_pub)]
        bad += [(point, kem_pub) for point in LOW_ORDER]
    if mode.uses_pq:
        bad += [(x_pub, kem_pub[:-1]), (x_pub, kem_pub + b"\x00"), (x_pub, b""), (x_pub, b"\xff" * 1184)]
    for x_offer, kem_offer in bad:
        with pytest.raises(RemoteProtocolError):
            respond(mode, rng_for("r"), x_offer, kem_offer)
    with pytest.raises(RemoteProtocolError):
        kex._x25519_public(bytearray(32))  # type: ignore[arg-type]
