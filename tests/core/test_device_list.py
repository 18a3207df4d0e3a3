"""Account-signed device lists (core.device_list) and the account identity encoding."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from sonet.core import canonical, limits
from sonet.core.crypto import CryptoMode, CryptoPolicy, SigningKey
from sonet.core.device_list import (
    DEVICE_LIST_LABEL,
    DeviceList,
    check_successor,
    decode_account_identity,
    encode_account_identity,
    sign_device_list,
    verify_device_list,
)
from sonet.core.errors import LocalProtocolError, RemoteProtocolError, VerifyError

from .pairs import flip_bit, identity

HYBRID = CryptoMode.HYBRID
ACCOUNT = "alice@alpha.example"
NOW = 1_700_000_000_000


def account_key(name: str = "alice account", mode: CryptoMode = HYBRID) -> SigningKey:
    return identity(mode, name)


def fp(name: str) -> str:
    return identity(CryptoMode.CLASSICAL, f"device {name}").public.fingerprint


PHONE, LAPTOP, TABLET = fp("phone"), fp("laptop"), fp("tablet")


def make(version: int = 1, devices: Any = (PHONE,), **kw: Any) -> bytes:
    key = kw.pop("key", account_key())
    args: dict[str, Any] = dict(account=ACCOUNT, version=version, devices=devices, now=NOW)
    args.update(kw)
    return sign_device_list(key, **args)


def verify(raw: bytes, **kw: Any) -> DeviceList:
    args: dict[str, Any] = dict(account_key=account_key().public, account=ACCOUNT)
    args.update(kw)
    return verify_device_list(raw, **args)


def body_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"v": 1, "account": ACCOUNT, "version": 1, "devices": [PHONE], "issued": NOW}
    fields.update(changes)
    return fields


def signed(fields: dict[str, Any], key: SigningKey | None = None, label: bytes = DEVICE_LIST_LABEL) -> bytes:
    body = canonical.dumps(fields)
    return canonical.dumps({"body": body, "sig": (key or account_key()).sign(label, body)})


def expect(code: str, raw: bytes, **kw: Any) -> None:
    with pytest.raises(VerifyError) as info:
        verify(raw, **kw)
    assert info.value.code == code


def expect_malformed(raw: Any) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        verify(raw)
    assert not isinstance(info.value, VerifyError)
    assert info.value.code == "device_list_malformed"


@pytest.mark.parametrize("mode", list(CryptoMode), ids=lambda m: m.value)
def test_round_trip(mode: CryptoMode) -> None:
    key = account_key(mode=mode)
    raw = make(3, {TABLET, PHONE, LAPTOP}, key=key)
    dl = verify(raw, account_key=key.public)
    assert dl.account == ACCOUNT
    assert dl.version == 3
    assert dl.devices == tuple(sorted([PHONE, LAPTOP, TABLET]))
    assert dl.issued == NOW
    assert dl.raw == raw
    assert PHONE in dl and fp("watch") not in dl


def test_hand_built_list_matches_the_format() -> None:
    assert canonical.loads(signed(body_fields()))["body"] == canonical.loads(make())["body"]


def test_devices_are_normalised_sorted_and_unique() -> None:
    raw = make(devices=[TABLET.upper(), PHONE, "-".join([PHONE[:16], PHONE[16:]]), LAPTOP])
    assert verify(raw).devices == tuple(sorted({PHONE, LAPTOP, TABLET}))


def test_empty_and_full_lists_round_trip() -> None:
    assert verify(make(devices=())).devices == ()
    full = [fp(str(i)) for i in range(limits.MAX_DEVICES_PER_ACCOUNT)]
    assert verify(make(devices=full)).devices == tuple(sorted(full))


def test_account_is_normalised() -> None:
    assert verify(make(account="Alice@Alpha.Example"), account="ALICE@alpha.example").account == ACCOUNT


# Signatures and accounts -----------------------------------------------------------------


def test_list_signed_by_another_account_key_is_refused() -> None:
    expect("device_list_forged", make(key=account_key("mallory account")))
    expect("device_list_forged", make(), account_key=account_key("mallory account").public)


def test_signature_under_another_label_is_refused() -> None:
    expect("device_list_forged", signed(body_fields(), label=b"sonet-sender-cert-v1"))


@pytest.mark.parametrize(
    "changes",
    [
        {"account": "bob@alpha.example"},
        {"version": 2},
        {"devices": [PHONE, LAPTOP] if PHONE < LAPTOP else [LAPTOP, PHONE]},
        {"devices": []},
        {"issued": NOW + 1},
    ],
    ids=["account", "version", "device-added", "devices-emptied", "issued"],
)
def test_every_tampered_field_breaks_the_signature(changes: dict[str, Any]) -> None:
    outer = canonical.loads(make())
    tampered = canonical.dumps({"body": canonical.dumps(body_fields(**changes)), "sig": outer["sig"]})
    expect("device_list_forged", tampered, account=changes.get("account", ACCOUNT))


@pytest.mark.parametrize("bit", [0, 9, 8 * 64 + 1, -1])
def test_tampered_signature_is_refused(bit: int) -> None:
    outer = canonical.loads(make())
    sig = outer["sig"]
    expect("device_list_forged", canonical.dumps({"body": outer["body"], "sig": flip_bit(sig, bit % (len(sig) * 8))}))


def test_list_of_another_account_is_refused() -> None:
    # Validly signed by the same key, but for another account: a node cannot reuse it.
    expect("device_list_mismatch", make(account="bob@alpha.example"))
    expect("device_list_mismatch", make(), account="bob@alpha.example")


# Malformed input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"extra": 1},
        {"version": 0},
        {"version": -1},
        {"issued": -1},
        {"devices": "phone"},
        {"devices": [PHONE, PHONE]},
        {"devices": sorted([PHONE, LAPTOP], reverse=True)},
        {"devices": [PHONE.upper()]},
        {"devices": ["short"]},
        {"devices": [7]},
        {"devices": sorted(fp(str(i)) for i in range(limits.MAX_DEVICES_PER_ACCOUNT + 1))},
        {"account": "alice"},
    ],
    ids=[
        "version",
        "extra",
        "list-version-0",
        "list-version-negative",
        "issued-negative",
        "devices-str",
        "duplicate",
        "unsorted",
        "upper-case",
        "short-fp",
        "int-fp",
        "too-many",
        "account",
    ],
)
def test_malformed_signed_body_is_refused(changes: dict[str, Any]) -> None:
    raw = signed(body_fields(**changes))
    if "account" in changes:  # a validly signed list naming a non-address is not ours
        expect("device_list_mismatch", raw)
    else:
        expect_malformed(raw)


def test_missing_field_is_refused() -> None:
    for name in body_fields():
        fields = body_fields()
        del fields[name]
        expect_malformed(signed(fields))


def test_outer_structure_is_strict() -> None:
    raw = make()
    outer = canonical.loads(raw)
    expect_malformed(raw + b"\0")
    expect_malformed(canonical.dumps({**outer, "x": 1}))
    expect_malformed(cbor2.dumps(dict(reversed(list(outer.items())))))
    expect_malformed(b"\0" * (limits.MAX_DEVICE_LIST_BYTES + 1))
    expect_malformed("text")


@pytest.mark.parametrize(
    "kw",
    [
        {"version": 0},
        {"version": 2**63},
        {"devices": ["not a fingerprint"]},
        {"devices": [fp(str(i)) for i in range(limits.MAX_DEVICES_PER_ACCOUNT + 1)]},
        {"account": "alice"},
        {"now": -1},
    ],
    ids=["version-0", "version-huge", "bad-fp", "too-many", "account", "now"],
)
def test_sign_refuses_bad_arguments(kw: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        make(**kw)


# Successors ------------------------------------------------------------------------------


def test_higher_version_may_follow() -> None:
    old = verify(make(1, {PHONE}))
    check_successor(old, verify(make(2, {PHONE, LAPTOP})))
    check_successor(old, verify(make(9, {LAPTOP})))  # versions may skip


def test_rollback_is_refused() -> None:
    old = verify(make(5, {LAPTOP}))
    for version in (1, 4):
        with pytest.raises(VerifyError) as info:
            check_successor(old, verify(make(version, {PHONE, LAPTOP})))
        assert info.value.code == "device_list_rollback"


def test_same_version_same_content_is_accepted_even_re_signed() -> None:
    first, again = make(2, {PHONE}), make(2, {PHONE})
    assert first != again  # ML-DSA signatures are randomised
    check_successor(verify(first), verify(again))
    check_successor(verify(first), verify(first))


@pytest.mark.parametrize("kw", [{"devices": {PHONE, LAPTOP}}, {"now": NOW + 1}], ids=["devices", "issued"])
def test_same_version_with_other_content_is_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(VerifyError) as info:
        check_successor(verify(make(2, {PHONE})), verify(make(2, **{"devices": {PHONE}, **kw})))
    assert info.value.code == "device_list_rollback"


def test_successor_for_another_account_is_refused() -> None:
    bob = verify(make(3, account="bob@alpha.example"), account="bob@alpha.example")
    with pytest.raises(VerifyError) as info:
        check_successor(verify(make(2)), bob)
    assert info.value.code == "device_list_mismatch"


# Account identity ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(CryptoMode), ids=lambda m: m.value)
def test_account_identity_round_trip(mode: CryptoMode) -> None:
    key = account_key(mode=mode)
    raw = encode_account_identity(key)
    assert raw == encode_account_identity(key.public) == key.public.to_bytes()
    assert decode_account_identity(raw) == key.public
    assert decode_account_identity(raw, policy=CryptoPolicy(mode)) == key.public


def test_account_identity_below_policy_is_refused() -> None:
    raw = encode_account_identity(account_key(mode=CryptoMode.CLASSICAL))
    with pytest.raises(RemoteProtocolError) as info:
        decode_account_identity(raw, policy=CryptoPolicy(HYBRID))
    assert info.value.code == "crypto_mode_refused"


@pytest.mark.parametrize("raw", [b"", b"garbage", canonical.dumps({"mode": "hybrid"})], ids=["empty", "garbage", "no-keys"])
def test_malformed_account_identity_is_refused(raw: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_account_identity(raw)
