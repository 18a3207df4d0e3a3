"""Signed device records (core.device): only verify_device_record yields a trusted record."""

from __future__ import annotations

import functools
from typing import Any

import cbor2
import pytest

from sonet.core import canonical
from sonet.core.crypto import CryptoMode, CryptoPolicy, HpkePrivateKey, HpkePublicKey, SigningKey
from sonet.core.device import DeviceRecord, make_device_record, verify_device_record
from sonet.core.errors import RemoteProtocolError, VerifyError

from .pairs import flip_bit, identity, rng

CLASSICAL, HYBRID, PQ = CryptoMode.CLASSICAL, CryptoMode.HYBRID, CryptoMode.PQ
MODES = list(CryptoMode)
LABEL = b"sonet-device-record-v1"  # pinned: changing it is a protocol change
ACCOUNT = "alice@alpha.example"
CREATED = 1_700_000_000_000


@functools.cache
def hpke(mode: CryptoMode, name: str = "alice phone") -> HpkePublicKey:
    return HpkePrivateKey.generate(mode, rng(("device hpke", mode.value, name))).public


def device(mode: CryptoMode, name: str = "alice phone") -> SigningKey:
    return identity(mode, name)


def record(mode: CryptoMode = HYBRID, **kw: Any) -> bytes:
    args: dict[str, Any] = dict(account=ACCOUNT, identity=device(mode), hpke=hpke(mode), created=CREATED)
    args.update(kw)
    return make_device_record(**args)


def body_fields(mode: CryptoMode = HYBRID, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "v": 1,
        "account": ACCOUNT,
        "identity": device(mode).public.to_bytes(),
        "hpke": hpke(mode).to_bytes(),
        "created": CREATED,
    }
    fields.update(changes)
    return fields


def signed(body: bytes, key: SigningKey | None = None, *, mode: CryptoMode = HYBRID) -> bytes:
    """A well-formed record around ``body`` with a valid signature by ``key``."""
    return canonical.dumps({"body": body, "sig": (key or device(mode)).sign(LABEL, body)})


def verify(raw: bytes, mode: CryptoMode = HYBRID, **kw: Any) -> DeviceRecord:
    return verify_device_record(raw, policy=kw.pop("policy", CryptoPolicy(mode)), **kw)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_round_trip(mode: CryptoMode) -> None:
    raw = record(mode)
    rec = verify(raw, mode, account=ACCOUNT)
    assert rec.account == ACCOUNT
    assert rec.identity == device(mode).public
    assert rec.hpke == hpke(mode)
    assert rec.created == CREATED
    assert rec.raw == raw
    assert rec.fingerprint == device(mode).public.fingerprint
    assert verify(raw, mode) == rec  # the account check is optional


def test_hand_built_record_matches_the_format() -> None:
    # Sanity check for the forgeries below (ML-DSA signing is randomised, so compare bodies).
    raw = signed(canonical.dumps(body_fields()))
    assert canonical.loads(raw)["body"] == canonical.loads(record())["body"]
    assert verify(raw, account=ACCOUNT).identity == device(HYBRID).public


def test_account_is_normalised() -> None:
    rec = verify(record(account="Alice@Alpha.Example"), account=ACCOUNT)
    assert rec.account == ACCOUNT


def test_wrong_account_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="expected") as info:
        verify(record(), account="mallory@alpha.example")
    assert not isinstance(info.value, VerifyError)


@pytest.mark.parametrize("account", ["alice", "alice@", "a@b@c", "", "alice@bad_node"])
def test_invalid_account_in_a_signed_record_is_refused(account: str) -> None:
    with pytest.raises(RemoteProtocolError, match="invalid"):
        verify(signed(canonical.dumps(body_fields(account=account))))


@pytest.mark.parametrize(
    "changes",
    [
        {"created": CREATED + 1},
        {"account": "mallory@alpha.example"},
        {"hpke": hpke(HYBRID, "mallory").to_bytes()},
        {"identity": device(HYBRID, "mallory").public.to_bytes()},
    ],
    ids=["created", "account", "hpke", "identity"],
)
def test_tampered_body_is_refused(changes: dict[str, Any]) -> None:
    outer = canonical.loads(record())
    tampered = canonical.dumps({"body": canonical.dumps(body_fields(**changes)), "sig": outer["sig"]})
    with pytest.raises(VerifyError):
        verify(tampered)


@pytest.mark.parametrize("bit", [0, 7, 8 * 64, 8 * 64 + 3, -1])
def test_tampered_signature_is_refused(bit: int) -> None:
    outer = canonical.loads(record())
    sig = outer["sig"]
    bad = flip_bit(sig, bit % (len(sig) * 8))
    with pytest.raises(VerifyError):
        verify(canonical.dumps({"body": outer["body"], "sig": bad}))


@pytest.mark.parametrize("sig", [b"", b"\0" * 64, None], ids=["empty", "classical-length", "truncated"])
def test_signature_of_the_wrong_length_is_refused(sig: bytes | None) -> None:
    outer = canonical.loads(record())
    bad = outer["sig"][:-1] if sig is None else sig
    with pytest.raises(VerifyError, match="length"):
        verify(canonical.dumps({"body": outer["body"], "sig": bad}))


def test_record_signed_by_another_key_is_refused() -> None:
    with pytest.raises(VerifyError):
        verify(signed(canonical.dumps(body_fields()), device(HYBRID, "mallory")))


def test_signature_under_another_label_is_refused() -> None:
    body = canonical.dumps(body_fields())
    raw = canonical.dumps({"body": body, "sig": device(HYBRID).sign(b"sonet-sealed-v1", body)})
    with pytest.raises(VerifyError):
        verify(raw)


def test_non_canonical_outer_is_refused() -> None:
    raw = record()
    outer = canonical.loads(raw)
    for variant in (dict(outer), dict(reversed(list(outer.items())))):
        data = cbor2.dumps(variant)
        if data != raw:
            with pytest.raises(RemoteProtocolError, match="canonical"):
                verify(data)
            break
    else:  # pragma: no cover
        pytest.fail("could not build a non-canonical variant")


def test_non_canonical_body_is_refused_even_when_validly_signed() -> None:
    fields = body_fields()
    body = cbor2.dumps(dict(reversed(list(fields.items()))))
    assert body != canonical.dumps(fields)
    with pytest.raises(RemoteProtocolError, match="canonical"):
        verify(signed(body))


def test_non_minimal_integer_is_refused() -> None:
    body = canonical.dumps(body_fields(created=5))
    # 0x05 (created) re-encoded as a one-byte-argument unsigned int: 0x18 0x05, same value.
    needle = b"gcreated\x05"
    assert body.count(needle) == 1
    long_form = body.replace(needle, b"gcreated\x18\x05")
    with pytest.raises(RemoteProtocolError, match="canonical"):
        verify(signed(long_form))


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        verify(record() + b"\0")


@pytest.mark.parametrize(
    "fields",
    [
        {"v": 2},
        {"extra": 1},
        {"created": "now"},
        {"identity": b"not a key"},
        {"hpke": b"not a key"},
    ],
    ids=["version", "extra-field", "created-type", "identity", "hpke"],
)
def test_malformed_signed_body_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        verify(signed(canonical.dumps(body_fields(**fields))))
    assert not isinstance(info.value, VerifyError)


def test_malformed_outer_is_refused() -> None:
    outer = canonical.loads(record())
    for bad in ({"body": outer["body"]}, {**outer, "x": 1}, {"body": "text", "sig": outer["sig"]}, [outer["body"], outer["sig"]]):
        with pytest.raises(RemoteProtocolError):
            verify(canonical.dumps(bad))


@pytest.mark.parametrize("id_mode, minimum", [(CLASSICAL, HYBRID), (CLASSICAL, PQ), (HYBRID, PQ)], ids=lambda m: m.value)
def test_identity_below_the_policy_minimum_is_refused(id_mode: CryptoMode, minimum: CryptoMode) -> None:
    raw = record(identity=device(id_mode), hpke=hpke(minimum))
    with pytest.raises(RemoteProtocolError) as info:
        verify(raw, policy=CryptoPolicy(minimum))
    assert info.value.code == "crypto_mode_refused"
    assert verify(raw, policy=CryptoPolicy(id_mode)).identity == device(id_mode).public


@pytest.mark.parametrize("hpke_mode, minimum", [(CLASSICAL, HYBRID), (CLASSICAL, PQ), (HYBRID, PQ)], ids=lambda m: m.value)
def test_encryption_key_below_the_policy_minimum_is_refused(hpke_mode: CryptoMode, minimum: CryptoMode) -> None:
    raw = record(identity=device(minimum), hpke=hpke(hpke_mode))
    with pytest.raises(RemoteProtocolError) as info:
        verify(raw, policy=CryptoPolicy(minimum))
    assert info.value.code == "crypto_mode_refused"


# X25519 identity key (``dh``) for session key agreement ------------------------------------

from sonet.core.errors import LocalProtocolError  # noqa: E402  (appended section)

DH = bytes(range(32))


@pytest.mark.parametrize("mode", [CLASSICAL, HYBRID], ids=lambda m: m.value)
def test_identity_dh_round_trip(mode: CryptoMode) -> None:
    raw = record(mode, identity_dh=DH)
    rec = verify(raw, mode, account=ACCOUNT)
    assert rec.identity_dh == DH
    assert canonical.loads(canonical.loads(raw)["body"])["dh"] == DH


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_record_without_identity_dh_is_unchanged(mode: CryptoMode) -> None:
    raw = record(mode)
    assert "dh" not in canonical.loads(canonical.loads(raw)["body"])
    assert verify(raw, mode).identity_dh is None


def test_identity_dh_is_refused_in_pq_mode() -> None:
    with pytest.raises(LocalProtocolError, match="pq"):
        record(PQ, identity_dh=DH)
    # A validly self-signed pq record carrying one anyway is refused too.
    raw = signed(canonical.dumps(body_fields(PQ, dh=DH)), mode=PQ)
    with pytest.raises(RemoteProtocolError) as info:
        verify(raw, PQ)
    assert not isinstance(info.value, VerifyError)


@pytest.mark.parametrize("dh", [b"", DH[:31], DH + b"\0", "x" * 32], ids=["empty", "short", "long", "str"])
def test_malformed_identity_dh_is_refused(dh: object) -> None:
    with pytest.raises(LocalProtocolError):
        record(identity_dh=dh)
    with pytest.raises(RemoteProtocolError) as info:
        verify(signed(canonical.dumps(body_fields(dh=dh))))
    assert not isinstance(info.value, VerifyError)


def test_tampered_or_stripped_identity_dh_breaks_the_signature() -> None:
    outer = canonical.loads(record(identity_dh=DH))
    for fields in (body_fields(dh=bytes(32)), body_fields()):
        with pytest.raises(VerifyError):
            verify(canonical.dumps({"body": canonical.dumps(fields), "sig": outer["sig"]}))
    # ...and adding one to a record signed without it.
    plain = canonical.loads(record())
    with pytest.raises(VerifyError):
        verify(canonical.dumps({"body": canonical.dumps(body_fields(dh=DH)), "sig": plain["sig"]}))
