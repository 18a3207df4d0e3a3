"""Safety numbers and QR codes (core.safety): libsignal's numeric fingerprint over account keys."""

from __future__ import annotations

import base64
import functools
import re

import pytest

from sonet.core.crypto import CryptoMode, SigningKey, VerifyKey
from sonet.core.device_list import sign_device_list, verify_device_list
from sonet.core.errors import LocalProtocolError
from sonet.core.safety import (
    ITERATIONS,
    QR_PREFIX,
    fingerprint_digits,
    numeric_fingerprint,
    party_fingerprint,
    qr_payload,
    safety_number,
    verify_qr_payload,
)

from .pairs import identity

HYBRID = CryptoMode.HYBRID
ALICE, BOB = "alice@alpha.example", "bob@beta.example"
FORMAT = re.compile(r"\d{5}( \d{5}){11}")


@functools.cache
def key(mode: CryptoMode, n: int) -> VerifyKey:
    """Fixed keys from fixed seeds (independent of any test helper), for pinned values."""
    return SigningKey(mode, bytes([n]) * 32 if mode.uses_classical else None, bytes([n + 1]) * 32 if mode.uses_pq else None).public


A, B = key(HYBRID, 1), key(HYBRID, 2)


@functools.cache
def number(my_address: str, my_key: VerifyKey, their_address: str, their_key: VerifyKey) -> str:
    return safety_number(my_address, my_key, their_address, their_key)


def test_libsignal_test_vector() -> None:
    # libsignal rust/protocol/src/fingerprint.rs, fingerprint_test_v1/v2: the same construction
    # over Signal's 33-byte identity keys and phone-number stable ids.
    alice_key = bytes.fromhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
    bob_key = bytes.fromhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
    alice = numeric_fingerprint(b"+14152222222", alice_key, iterations=5200)
    bob = numeric_fingerprint(b"+14153333333", bob_key, iterations=5200)
    assert alice[:32].hex() == "1e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
    assert bob[:32].hex() == "d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
    digits = sorted([fingerprint_digits(alice), fingerprint_digits(bob)])
    assert "".join(digits) == "300354477692869396892869876765458257569162576843440918079131"


def test_iterations_are_signals() -> None:
    assert ITERATIONS == 5200
    assert numeric_fingerprint(b"id", b"key") == numeric_fingerprint(b"id", b"key", iterations=5200)
    assert numeric_fingerprint(b"id", b"key") != numeric_fingerprint(b"id", b"key", iterations=5199)
    for bad in (0, 1, 1_000_001):
        with pytest.raises(LocalProtocolError):
            numeric_fingerprint(b"id", b"key", iterations=bad)


def test_party_fingerprint_uses_the_address_and_key_encodings() -> None:
    assert party_fingerprint(ALICE, A) == numeric_fingerprint(ALICE.encode(), A.to_bytes())
    assert len(party_fingerprint(ALICE, A)) == 64


@pytest.mark.parametrize(
    "mode, expected",
    [
        (CryptoMode.CLASSICAL, "76819 35330 88786 76458 62255 25942 82260 28498 03287 62127 32824 80316"),
        (CryptoMode.HYBRID, "31280 51993 85507 67106 56669 71460 76276 63588 44772 17196 70324 09755"),
        (CryptoMode.PQ, "39742 26418 62462 89159 17619 11133 62654 22387 84683 88311 16243 50793"),
    ],
    ids=lambda v: v.value if isinstance(v, CryptoMode) else "",
)
def test_pinned_value_same_on_both_sides(mode: CryptoMode, expected: str) -> None:
    a, b = key(mode, 1), key(mode, 2)
    assert safety_number(ALICE, a, BOB, b) == expected
    assert safety_number(BOB, b, ALICE, a) == expected


def test_format_is_twelve_groups_of_five_digits() -> None:
    n = number(ALICE, A, BOB, B)
    assert FORMAT.fullmatch(n)
    assert len(n.replace(" ", "")) == 60


def test_halves_are_each_partys_digits_in_sorted_order() -> None:
    mine = fingerprint_digits(party_fingerprint(ALICE, A))
    theirs = fingerprint_digits(party_fingerprint(BOB, B))
    assert number(ALICE, A, BOB, B).replace(" ", "") == min(mine, theirs) + max(mine, theirs)


def test_changes_when_either_account_key_changes() -> None:
    base = number(ALICE, A, BOB, B)
    other = key(HYBRID, 9)
    assert number(ALICE, other, BOB, B) != base
    assert number(ALICE, A, BOB, other) != base
    # Same seeds in another mode are another identity.
    assert number(ALICE, key(CryptoMode.CLASSICAL, 1), BOB, B) != base


def test_changes_when_an_address_changes() -> None:
    base = number(ALICE, A, BOB, B)
    assert number("alice@gamma.example", A, BOB, B) != base
    assert number(ALICE, A, "bobby@beta.example", B) != base


def test_addresses_are_normalised() -> None:
    assert safety_number("Alice@ALPHA.example", A, " bob@Beta.Example", B) == number(ALICE, A, BOB, B)


def test_invalid_address_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        safety_number("alice", A, BOB, B)


def test_unchanged_when_devices_are_added() -> None:
    # Devices join by a new device list signed with the SAME account key; the number is
    # computed from that account key only, so it stays the same.
    account = SigningKey(HYBRID, bytes([1]) * 32, bytes([2]) * 32)
    assert account.public == A
    phone, laptop = identity(HYBRID, "alice phone").public.fingerprint, identity(HYBRID, "alice laptop").public.fingerprint
    before = verify_device_list(sign_device_list(account, account=ALICE, version=1, devices={phone}, now=1), account_key=A, account=ALICE)
    after = verify_device_list(sign_device_list(account, account=ALICE, version=2, devices={phone, laptop}, now=2), account_key=A, account=ALICE)
    assert before.devices != after.devices
    assert number(ALICE, A, BOB, B) == "31280 51993 85507 67106 56669 71460 76276 63588 44772 17196 70324 09755"
    # Whereas computing it from a device key (a caller's mistake) would give another number.
    assert number(ALICE, identity(HYBRID, "alice laptop").public, BOB, B) != number(ALICE, A, BOB, B)


# QR codes -----------------------------------------------------------------------------------


def test_qr_payload_format() -> None:
    payload = qr_payload(ALICE, A, BOB, B)
    assert payload.startswith(QR_PREFIX) and QR_PREFIX == "sonet-safety:1:"
    raw = base64.urlsafe_b64decode(payload[len(QR_PREFIX) :] + "==")
    assert raw == party_fingerprint(ALICE, A)[:32] + party_fingerprint(BOB, B)[:32]
    assert "=" not in payload


def test_qr_verifies_both_ways() -> None:
    alices, bobs = qr_payload(ALICE, A, BOB, B), qr_payload(BOB, B, ALICE, A)
    assert verify_qr_payload(bobs, ALICE, A, BOB, B)  # Alice scans Bob's screen
    assert verify_qr_payload(alices, BOB, B, ALICE, A)  # Bob scans Alice's screen


def test_own_qr_does_not_verify() -> None:
    assert not verify_qr_payload(qr_payload(ALICE, A, BOB, B), ALICE, A, BOB, B)


def test_qr_fails_for_a_changed_key_on_either_side() -> None:
    mitm = key(HYBRID, 9)
    # Bob sees a man in the middle's key for Alice; Alice's scan of Bob's code fails, and back.
    bobs = qr_payload(BOB, B, ALICE, mitm)
    assert not verify_qr_payload(bobs, ALICE, A, BOB, B)
    assert not verify_qr_payload(qr_payload(ALICE, A, BOB, B), BOB, B, ALICE, mitm)
    # Alice holds a wrong key for Bob.
    assert not verify_qr_payload(qr_payload(BOB, B, ALICE, A), ALICE, A, BOB, mitm)


def test_qr_fails_for_a_changed_address() -> None:
    assert not verify_qr_payload(qr_payload(BOB, B, "alice@gamma.example", A), ALICE, A, BOB, B)


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "hello",
        "sonet-safety:2:" + "A" * 86,
        QR_PREFIX,
        QR_PREFIX + "A" * 85,
        QR_PREFIX + "A" * 87,
        QR_PREFIX + "A" * 86 + "==",
        QR_PREFIX + "+" * 86,
        QR_PREFIX + "A" * 85 + "B",  # non-zero unused bits: not the canonical encoding
    ],
    ids=["empty", "other", "version-2", "no-data", "short", "long", "padded", "std-alphabet", "non-canonical"],
)
def test_malformed_qr_payload_is_refused(payload: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        verify_qr_payload(payload, ALICE, A, BOB, B)
    assert info.value.code == "safety_code_malformed"


def test_qr_of_a_flipped_character_does_not_verify() -> None:
    bobs = qr_payload(BOB, B, ALICE, A)
    i = len(QR_PREFIX) + 10
    flipped = bobs[:i] + ("A" if bobs[i] != "A" else "B") + bobs[i + 1 :]
    assert not verify_qr_payload(flipped, ALICE, A, BOB, B)
