"""Pre-shared keys of RFC 9420 §8.4 (sonet.core.mls.psk): PreSharedKeyID and PSKLabel encodings,
the psk_secret chain against the psk_secret vectors, and refusals."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sonet.core.errors import RemoteProtocolError
from sonet.core.mls.codec import DecodeError
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.interop import psk_secret as psk_secret_kind
from sonet.core.mls.interop.expect import VectorMismatch
from sonet.core.mls.psk import PreSharedKeyID, PSKLabel, PSKType, ResumptionPSKUsage, psk_secret
from tests.vectors import load_json

NONCE = bytes(range(32))
SUITE1 = cipher_suite(1)
CASES: list[dict[str, Any]] = load_json("mls/psk_secret.json")


def suite1_cases() -> list[dict[str, Any]]:
    cases = [c for c in CASES if c["cipher_suite"] == 1]
    assert len(cases) == 11
    return cases


def test_the_file_has_every_suite() -> None:
    assert {c["cipher_suite"] for c in CASES} == set(range(1, 8))


@pytest.mark.parametrize("case", CASES, ids=[f"suite{c['cipher_suite']}-{len(c['psks'])}psks" for c in CASES])
def test_vectors(case: dict[str, Any]) -> None:
    psk_secret_kind.check(case)


@pytest.mark.parametrize("field", ["psk_id", "psk", "psk_nonce", "psk_secret"])
def test_a_tampered_vector_fails(field: str) -> None:
    case = copy.deepcopy(suite1_cases()[3])
    holder = case if field == "psk_secret" else case["psks"][1]
    value = bytearray.fromhex(holder[field])
    value[0] ^= 0x80
    holder[field] = value.hex()
    with pytest.raises((VectorMismatch, RemoteProtocolError)):
        psk_secret_kind.check(case)


def test_reordered_psks_fail() -> None:
    case = copy.deepcopy(suite1_cases()[3])
    case["psks"].reverse()
    with pytest.raises(VectorMismatch):
        psk_secret_kind.check(case)


def test_no_psk_is_the_zero_secret() -> None:
    assert psk_secret(SUITE1, []) == bytes(32)


# -- encodings -----------------------------------------------------------------------------------


def test_external_id_encoding() -> None:
    psk_id = PreSharedKeyID.external(b"abc", b"\x07" * 2)
    assert psk_id.to_bytes() == bytes.fromhex("01" "03616263" "020707")
    assert PreSharedKeyID.from_bytes(psk_id.to_bytes()) == psk_id


def test_resumption_id_encoding() -> None:
    psk_id = PreSharedKeyID.resumption(ResumptionPSKUsage.BRANCH, b"g", 258, b"\x01")
    assert psk_id.to_bytes() == bytes.fromhex("02" "03" "0167" "0000000000000102" "0101")
    decoded = PreSharedKeyID.from_bytes(psk_id.to_bytes())
    assert decoded == psk_id and decoded.psktype is PSKType.RESUMPTION and decoded.usage is ResumptionPSKUsage.BRANCH
    assert "resumption" in repr(decoded) and "epoch=258" in repr(decoded)


def test_psk_label_encoding() -> None:
    label = PSKLabel(PreSharedKeyID.external(b"i", b"n"), 1, 3)
    assert label.to_bytes() == bytes.fromhex("01" "0169" "016e" "0001" "0003")
    assert PSKLabel.from_bytes(label.to_bytes()) == label


@pytest.mark.parametrize(
    "data, message",
    [
        ("00" "0161" "00", "unknown PSK type 0"),
        ("03" "0161" "00", "unknown PSK type 3"),
        ("02" "04" "0167" "0000000000000001" "00", "unknown resumption PSK usage 4"),
        ("02" "00" "0167" "0000000000000001" "00", "unknown resumption PSK usage 0"),
        ("01" "0561", "past the end"),
        ("01" "0161", "truncated"),
        ("01" "0161" "00" "00", "trailing"),
    ],
)
def test_a_malformed_id_is_refused(data: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        PreSharedKeyID.from_bytes(bytes.fromhex(data))


# -- refusals of psk_secret ------------------------------------------------------------------------


def test_a_nonce_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="PSK nonce of 31 bytes, the suite needs 32"):
        psk_secret(SUITE1, [(PreSharedKeyID.external(b"id", NONCE[:31]), b"k")])


def test_the_same_psk_twice_is_refused() -> None:
    psk_id = PreSharedKeyID.resumption(ResumptionPSKUsage.APPLICATION, b"g", 1, NONCE)
    with pytest.raises(RemoteProtocolError, match="the same pre-shared key twice"):
        psk_secret(SUITE1, [(psk_id, b"a"), (psk_id, b"b")])
    other = PreSharedKeyID.resumption(ResumptionPSKUsage.APPLICATION, b"g", 2, NONCE)
    assert psk_secret(SUITE1, [(psk_id, b"a"), (other, b"a")]) != psk_secret(SUITE1, [(other, b"a"), (psk_id, b"a")])
