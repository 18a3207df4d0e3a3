"""Welcome (core/mls/messages/welcome.py) against the IETF welcome vectors of every suite, its
two encryptions round-tripping, and tampered Welcomes refused: another member's KeyPackage, a
wrong init key, a changed encrypted GroupInfo, another signer."""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from typing import Any

import pytest

from sonet.core.errors import DecryptError, VerifyError
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.framing import MLSMessage, WireFormat
from sonet.core.mls.interop import welcome as welcome_kind
from sonet.core.mls.key_package import ValidationError
from sonet.core.mls.key_schedule import GroupContext
from sonet.core.mls.messages import (
    EncryptedGroupSecrets,
    GroupInfo,
    GroupSecrets,
    PathSecret,
    Welcome,
    decrypt_group_info,
    decrypt_group_secrets,
    encrypt_group_info,
    encrypt_group_secrets,
)
from tests import vectors


def cases() -> list[dict[str, Any]]:
    loaded = vectors.load_json("mls/welcome.json")
    assert isinstance(loaded, list) and loaded
    return loaded


def rewelcome(case: dict[str, Any], change: Any) -> dict[str, Any]:
    message = MLSMessage.from_bytes(bytes.fromhex(case["welcome"]))
    assert isinstance(message.body, Welcome)
    return dict(case, welcome=MLSMessage(WireFormat.WELCOME, change(message.body)).to_bytes().hex())


def test_every_welcome_vector_passes_for_every_suite() -> None:
    found = cases()
    assert {c["cipher_suite"] for c in found} == set(range(1, 8))
    for case in found:
        welcome_kind.check(case)


def test_a_welcome_for_another_key_package_is_refused() -> None:
    case = cases()[0]
    other = rewelcome(case, lambda w: replace(w, secrets=tuple(replace(s, new_member=b"\x00" * len(s.new_member)) for s in w.secrets)))
    with pytest.raises(ValidationError, match="no group secrets for this KeyPackage"):
        welcome_kind.check(other)


def test_a_wrong_init_key_does_not_decrypt() -> None:
    case = cases()[0]
    cs = cipher_suite(case["cipher_suite"])
    wrong = dict(case, init_priv=cs.derive_key_pair(b"\x05" * 32)[0].hex())
    with pytest.raises(DecryptError):
        welcome_kind.check(wrong)


def test_a_changed_encrypted_group_info_is_refused() -> None:
    case = cases()[0]

    def flip(w: Welcome) -> Welcome:
        info = bytearray(w.encrypted_group_info)
        info[-1] ^= 1
        return replace(w, encrypted_group_info=bytes(info))

    with pytest.raises(DecryptError):  # it is the context of the group secrets' encryption too
        welcome_kind.check(rewelcome(case, flip))


def test_another_signer_is_refused() -> None:
    case = copy.deepcopy(cases()[1])
    cs = cipher_suite(case["cipher_suite"])
    _, other = cs.signature_key_pair(random.Random(3).randbytes)
    with pytest.raises(VerifyError, match="GroupInfo signature"):
        welcome_kind.check(dict(case, signer_pub=other.hex()))


def test_group_secrets_and_group_info_round_trip_through_their_encryptions() -> None:
    cs = cipher_suite(1)
    rng = random.Random(7).randbytes
    init_priv, init_pub = cs.hpke_key_pair(rng)
    sig_priv, sig_pub = cs.signature_key_pair(rng)
    welcome_secret = rng(cs.nh)
    info = GroupInfo(GroupContext(1, b"group", 3, b"t" * 32, b"c" * 32), (), b"tag" * 10, 0).signed(cs, sig_priv)
    assert info.verify_signature(cs, sig_pub)
    encrypted_info = encrypt_group_info(cs, welcome_secret, info)
    secrets = GroupSecrets(b"j" * 32, PathSecret(b"p" * 32))
    sealed = encrypt_group_secrets(cs, init_pub, encrypted_info, secrets, rng)
    welcome = Welcome(1, (EncryptedGroupSecrets(b"ref", sealed),), encrypted_info)
    assert decrypt_group_secrets(cs, welcome, b"ref", init_priv) == secrets
    assert decrypt_group_info(cs, welcome_secret, welcome.encrypted_group_info) == info
    with pytest.raises(DecryptError):
        decrypt_group_info(cs, rng(cs.nh), welcome.encrypted_group_info)
    with pytest.raises(ValidationError, match="cipher suite 1, not 2"):
        decrypt_group_secrets(cipher_suite(2), welcome, b"ref", init_priv)
    assert not replace(info, signer=1).verify_signature(cs, sig_pub)
