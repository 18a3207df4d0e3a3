"""The crypto-basics interop kind over the IETF vector file (every suite it holds, 1-7), and
tampered copies of its cases that ``check`` must refuse."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from sonet.core.errors import DecryptError
from sonet.core.mls.codec import DecodeError
from sonet.core.mls.interop import load_check, run_cases
from sonet.core.mls.interop.crypto_basics import check
from sonet.core.mls.interop.expect import VectorMismatch
from tests.vectors import load_json

CASES: list[dict[str, Any]] = load_json("mls/crypto-basics.json")


def test_every_case_passes_for_every_suite_in_the_file() -> None:
    assert sorted(c["cipher_suite"] for c in CASES) == [1, 2, 3, 4, 5, 6, 7]
    for case in CASES:
        check(case)


def test_the_runner_finds_the_kind() -> None:
    assert load_check("crypto-basics") is check
    result = run_cases(check, CASES)
    assert (result.passed, result.failed) == (7, 0)


def _flip_hex(value: str, byte: int) -> str:
    data = bytearray(bytes.fromhex(value))
    data[byte] ^= 0x01
    return data.hex()


def _tamper(part: str, key: str, byte: int = 0) -> Callable[[dict[str, Any]], None]:
    def edit(case: dict[str, Any]) -> None:
        case[part][key] = _flip_hex(case[part][key], byte)

    return edit


def _set(part: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(case: dict[str, Any]) -> None:
        case[part][key] = value

    return edit


#: name -> an edit of a copy of a case
TAMPERINGS: dict[str, Callable[[dict[str, Any]], None]] = {
    "ref_hash value": _tamper("ref_hash", "value"),
    "ref_hash out": _tamper("ref_hash", "out", 5),
    "ref_hash label": _set("ref_hash", "label", "RefHasH"),
    "expand_with_label label": _set("expand_with_label", "label", "ExpandWithLabeL"),
    "expand_with_label context": _tamper("expand_with_label", "context"),
    "expand_with_label length": lambda c: c["expand_with_label"].update(length=c["expand_with_label"]["length"] + 1),
    "derive_secret secret": _tamper("derive_secret", "secret"),
    "derive_tree_secret generation": lambda c: c["derive_tree_secret"].update(generation=c["derive_tree_secret"]["generation"] ^ 1),
    "signature flipped byte": lambda c: c["sign_with_label"].update(
        signature=_flip_hex(c["sign_with_label"]["signature"], len(c["sign_with_label"]["signature"]) // 2 - 1)
    ),
    "signature wrong label": _set("sign_with_label", "label", "SignWithLabeL"),
    "signature wrong content": _tamper("sign_with_label", "content"),
    "signature pub of another key": _tamper("sign_with_label", "pub", -1),
    "kem_output tampered": lambda c: c["encrypt_with_label"].update(
        kem_output=_flip_hex(c["encrypt_with_label"]["kem_output"], len(c["encrypt_with_label"]["kem_output"]) // 2 - 1)
    ),
    "ciphertext tampered": _tamper("encrypt_with_label", "ciphertext"),
    "encryption wrong label": _set("encrypt_with_label", "label", "EncryptWithLabeL"),
    "encryption wrong context": _tamper("encrypt_with_label", "context"),
    "encryption priv of another key": _tamper("encrypt_with_label", "priv", -1),
    "unknown cipher suite": lambda c: c.update(cipher_suite=0x0A0A),
}


#: a wrong computed value is a VectorMismatch; what does not decrypt is the opaque DecryptError
RAISES: dict[str, type[Exception]] = {name: VectorMismatch for name in TAMPERINGS} | {
    "kem_output tampered": DecryptError,
    "ciphertext tampered": DecryptError,
    "encryption wrong label": DecryptError,
    "encryption wrong context": DecryptError,
    "unknown cipher suite": DecodeError,
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_a_tampered_case_fails_in_every_suite(name: str) -> None:
    for case in CASES:
        bad = copy.deepcopy(case)
        TAMPERINGS[name](bad)
        with pytest.raises(RAISES[name]):
            check(bad)
