"""Signed prekeys, prekey secrets and bundle verification (core/ratchet/prekeys.py)."""

from __future__ import annotations

import dataclasses

import cbor2
import pytest

from sonet.core import canonical
from sonet.core.crypto import CryptoMode, SigningKey, VerifyKey
from sonet.core.errors import LocalProtocolError, RemoteProtocolError, VerifyError
from sonet.core.ratchet import MLKEM768, X25519, PrekeyBundle, PrekeySecret, SignedPrekey, decode_prekey, generate_prekey, verify_bundle
from sonet.core.ratchet import verify_prekey

from .helpers import MODE_IDS, MODES, device, flip, identity, rng


@pytest.mark.parametrize("kind", [X25519, MLKEM768])
def test_generate_and_verify_round_trip(kind: str) -> None:
    key = identity(CryptoMode.HYBRID, "bob")
    secret, signed = generate_prekey(key, kind, 7, rng(kind), last_resort=True)
    assert (signed.kind, signed.key_id, signed.last_resort) == (kind, 7, True)
    assert signed.public == secret.public and len(signed.public) == {X25519: 32, MLKEM768: 1184}[kind]
    assert verify_prekey(signed.to_bytes(), key.public) == signed
    loaded = PrekeySecret.from_bytes(secret.to_bytes())
    assert (loaded.kind, loaded.key_id, loaded.last_resort, loaded.public) == (kind, 7, True, secret.public)
    assert loaded.to_bytes() == secret.to_bytes()


def test_prekey_signed_by_another_identity_fails() -> None:
    _, signed = generate_prekey(identity(CryptoMode.HYBRID, "bob"), X25519, 1, rng("p"))
    with pytest.raises(VerifyError):
        verify_prekey(signed.to_bytes(), identity(CryptoMode.HYBRID, "mallory").public)


@pytest.mark.parametrize(
    "change",
    [
        lambda p: dataclasses.replace(p, key_id=p.key_id + 1),
        lambda p: dataclasses.replace(p, last_resort=not p.last_resort),
        lambda p: dataclasses.replace(p, public=flip(p.public)),
        lambda p: dataclasses.replace(p, signature=flip(p.signature, 5)),
    ],
    ids=["id", "last_resort", "public", "signature"],
)
def test_every_signed_field_is_covered(change) -> None:  # noqa: ANN001
    key = identity(CryptoMode.HYBRID, "bob")
    _, signed = generate_prekey(key, X25519, 1, rng("p"))
    with pytest.raises(VerifyError):
        verify_prekey(change(signed).to_bytes(), key.public)


def test_kind_relabel_is_refused() -> None:
    key = identity(CryptoMode.CLASSICAL, "bob")
    _, signed = generate_prekey(key, X25519, 1, rng("p"))
    with pytest.raises(RemoteProtocolError, match="1184 bytes"):
        verify_prekey(dataclasses.replace(signed, kind=MLKEM768).to_bytes(), key.public)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xa0",
        cbor2.dumps({"kind": "x25519", "id": 1, "public": bytes(32), "last_resort": False}),  # no sig
        canonical.dumps({"kind": "x448", "id": 1, "public": bytes(32), "last_resort": False, "sig": b""}),
        canonical.dumps({"kind": "x25519", "id": -1, "public": bytes(32), "last_resort": False, "sig": b""}),
        canonical.dumps({"kind": "x25519", "id": 2**32, "public": bytes(32), "last_resort": False, "sig": b""}),
        canonical.dumps({"kind": "x25519", "id": 1, "public": bytes(31), "last_resort": False, "sig": b""}),
        canonical.dumps({"kind": "x25519", "id": 1, "public": bytes(32), "last_resort": 0, "sig": b""}),
        canonical.dumps({"kind": "mlkem768", "id": 1, "public": b"\xff" * 1184, "last_resort": True, "sig": b""}),
        cbor2.dumps({"sig": b"", "kind": "x25519", "id": 1, "public": bytes(32), "last_resort": False}),  # unsorted
    ],
    ids=["empty", "empty-map", "no-sig", "kind", "negative-id", "big-id", "short", "bool-type", "bad-mlkem", "noncanonical"],
)
def test_malformed_prekeys_are_remote_errors(raw: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        verify_prekey(raw, identity(CryptoMode.CLASSICAL, "bob").public)
    # decoding alone checks the structure; whatever it lets through, verify_bundle refuses
    with pytest.raises(RemoteProtocolError):
        prekey = decode_prekey(raw)
        bundle = device(CryptoMode.HYBRID, "bob").bundle(verify=False)
        slot = "pq_prekey" if prekey.kind == MLKEM768 else "signed_prekey"
        verify_bundle(dataclasses.replace(bundle, **{slot: prekey}))


def test_decoded_prekeys_are_checked_once_by_verify_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    bob = device(CryptoMode.HYBRID, "bob")
    published = bob.bundle(verify=False)
    raws = {slot: getattr(published, slot).to_bytes() for slot in ("signed_prekey", "pq_prekey", "one_time_prekey")}
    checked: list[bytes] = []
    original = VerifyKey.verify

    def counting(self: VerifyKey, label: bytes, msg: bytes, signature: bytes) -> None:
        checked.append(msg)
        original(self, label, msg, signature)

    monkeypatch.setattr(VerifyKey, "verify", counting)
    decoded = {slot: decode_prekey(raw) for slot, raw in raws.items()}
    assert checked == [] and decoded["pq_prekey"] == published.pq_prekey
    assert verify_bundle(dataclasses.replace(published, **decoded)).verified
    assert len(checked) == 3
    # a prekey signed by someone else decodes, but spoils the bundle
    _, mallorys = generate_prekey(identity(CryptoMode.HYBRID, "mallory"), X25519, 9, rng("m"))
    with pytest.raises(VerifyError):
        verify_bundle(dataclasses.replace(published, signed_prekey=decode_prekey(mallorys.to_bytes())))


def test_prekey_secret_is_local_and_hidden() -> None:
    secret, _ = generate_prekey(identity(CryptoMode.CLASSICAL, "bob"), X25519, 3, rng("s"))
    seed = canonical.loads(secret.to_bytes())["seed"]
    assert seed.hex() not in repr(secret) and "<secret>" in repr(secret)
    with pytest.raises(LocalProtocolError):
        PrekeySecret.from_bytes(b"junk")
    with pytest.raises(LocalProtocolError):
        PrekeySecret.from_bytes(canonical.dumps({"kind": "mlkem768", "id": 1, "seed": bytes(32), "last_resort": False}))
    with pytest.raises(LocalProtocolError):
        secret.mlkem()
    assert secret.x25519().public == secret.public


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_bundle_verifies_and_is_marked(mode: CryptoMode) -> None:
    bob = device(mode, "bob")
    raw = bob.bundle(verify=False)
    assert not raw.verified
    verified = verify_bundle(raw)
    assert verified.verified and verified == raw


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_bundle_signed_by_another_identity_fails(mode: CryptoMode) -> None:
    """Identity change: Bob's prekeys presented under a new identity key (or the reverse)."""
    bundle = device(mode, "bob").bundle(verify=False)
    with pytest.raises(VerifyError):
        verify_bundle(dataclasses.replace(bundle, identity=identity(mode, "bob-reinstalled").public))


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_one_forged_prekey_spoils_the_bundle(mode: CryptoMode) -> None:
    bundle = device(mode, "bob").bundle(verify=False)
    slot = "signed_prekey" if mode.uses_classical else "pq_prekey"
    forged = dataclasses.replace(getattr(bundle, slot), signature=flip(getattr(bundle, slot).signature, 3))
    with pytest.raises(VerifyError):
        verify_bundle(dataclasses.replace(bundle, **{slot: forged}))


def _missing_and_extra(mode: CryptoMode) -> list[dict[str, object]]:
    other = device(CryptoMode.HYBRID, "bob")
    extra_pq = other.bundle(verify=False).pq_prekey
    extra_x = other.bundle(verify=False).signed_prekey
    if mode is CryptoMode.CLASSICAL:
        return [{"identity_dh": None}, {"signed_prekey": None}, {"pq_prekey": extra_pq}]
    if mode is CryptoMode.HYBRID:
        return [{"identity_dh": None}, {"signed_prekey": None}, {"pq_prekey": None}]
    return [{"pq_prekey": None}, {"identity_dh": bytes(32)}, {"signed_prekey": extra_x}, {"one_time_prekey": extra_x}]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_bundle_must_have_exactly_the_modes_parts(mode: CryptoMode) -> None:
    bundle = device(mode, "bob").bundle(verify=False)
    for change in _missing_and_extra(mode):
        with pytest.raises(RemoteProtocolError, match="must not have|lacks"):
            verify_bundle(dataclasses.replace(bundle, **change))


def test_bundle_slots_must_hold_the_right_kinds() -> None:
    bundle = device(CryptoMode.HYBRID, "bob").bundle(verify=False)
    with pytest.raises(RemoteProtocolError, match="must be a x25519 prekey"):
        verify_bundle(dataclasses.replace(bundle, signed_prekey=bundle.pq_prekey))
    with pytest.raises(RemoteProtocolError, match="must be a mlkem768 prekey"):
        verify_bundle(dataclasses.replace(bundle, pq_prekey=bundle.one_time_prekey))
    assert bundle.one_time_prekey is not None and bundle.signed_prekey is not None
    same_id = dataclasses.replace(bundle, one_time_prekey=bundle.signed_prekey)
    with pytest.raises(RemoteProtocolError, match="signed prekey's id"):
        verify_bundle(same_id)


def test_pq_mode_needs_a_pq_identity() -> None:
    classical_key = SigningKey.generate(CryptoMode.CLASSICAL, rng("ed-only"))
    _, pq_prekey = generate_prekey(classical_key, MLKEM768, 1, rng("p"), last_resort=True)
    bundle = PrekeyBundle(
        mode=CryptoMode.PQ, identity=classical_key.public, identity_dh=None, signed_prekey=None, pq_prekey=pq_prekey, one_time_prekey=None
    )
    with pytest.raises(RemoteProtocolError, match="ML-DSA"):
        verify_bundle(bundle)


def test_bundle_without_one_time_prekeys_is_valid() -> None:
    bob = device(CryptoMode.HYBRID, "bob", one_time=0)
    bundle = bob.bundle()
    assert bundle.one_time_prekey is None and bundle.pq_prekey is not None and bundle.pq_prekey.last_resort
    assert isinstance(bundle.signed_prekey, SignedPrekey)
