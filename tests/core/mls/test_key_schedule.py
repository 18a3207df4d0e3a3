"""The epoch key schedule of RFC 9420 §8 (sonet.core.mls.key_schedule): GroupContext, the
epoch secrets, the exporter and the external init key pair, against the key-schedule vectors,
with tampered vectors and malformed input refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.mls.codec import DecodeError
from sonet.core.mls.crypto import cipher_suite
from sonet.core.mls.extensions import Extension
from sonet.core.mls.interop import key_schedule as key_schedule_kind
from sonet.core.mls.interop.expect import VectorMismatch
from sonet.core.mls.key_schedule import (
    GroupContext,
    derive_epoch_secrets,
    epoch_secrets_from_joiner,
    joiner_secret,
    mls_exporter,
    welcome_key_nonce,
)
from tests.vectors import load_json

CONTEXT = GroupContext(cipher_suite=1, group_id=b"group", epoch=7, tree_hash=bytes(32), confirmed_transcript_hash=b"\x01" * 32)
INIT = bytes(range(32))
COMMIT = bytes(range(32, 64))
SUITE1 = cipher_suite(1)
CASES: list[dict[str, Any]] = load_json("mls/key-schedule.json")


def suite1_case() -> dict[str, Any]:
    cases = [c for c in CASES if c["cipher_suite"] == 1]
    assert len(cases) == 1 and len(cases[0]["epochs"]) > 1
    return cases[0]


def test_the_file_has_every_suite() -> None:
    assert {c["cipher_suite"] for c in CASES} == set(range(1, 8))


@pytest.mark.parametrize("case", CASES, ids=[f"suite{c['cipher_suite']}" for c in CASES])
def test_vectors(case: dict[str, Any]) -> None:
    key_schedule_kind.check(case)


@pytest.mark.parametrize(
    "epoch, field",
    [
        (0, "group_context"),
        (0, "joiner_secret"),
        (1, "welcome_secret"),
        (1, "init_secret"),
        (2, "sender_data_secret"),
        (2, "encryption_secret"),
        (3, "exporter_secret"),
        (3, "epoch_authenticator"),
        (3, "external_secret"),
        (4, "confirmation_key"),
        (4, "membership_key"),
        (4, "resumption_psk"),
        (4, "external_pub"),
        (1, "commit_secret"),
        (2, "psk_secret"),
        (3, "tree_hash"),
    ],
)
def test_a_tampered_vector_fails(epoch: int, field: str) -> None:
    case = copy.deepcopy(suite1_case())
    value = bytearray.fromhex(case["epochs"][epoch][field])
    value[-1] ^= 0x01
    case["epochs"][epoch][field] = value.hex()
    with pytest.raises(VectorMismatch):
        key_schedule_kind.check(case)


@pytest.mark.parametrize("field", ["label", "context", "secret", "length"])
def test_a_tampered_exporter_fails(field: str) -> None:
    case = copy.deepcopy(suite1_case())
    exporter = case["epochs"][1]["exporter"]
    if field == "length":
        exporter["length"] += 1
    elif field == "label":
        exporter["label"] += "x"
    else:
        exporter[field] = ("00" + exporter[field])[:-2]
    with pytest.raises(VectorMismatch):
        key_schedule_kind.check(case)


def test_a_tampered_group_id_or_initial_init_secret_fails() -> None:
    for field in ("group_id", "initial_init_secret"):
        case = copy.deepcopy(suite1_case())
        case[field] = "ff" + case[field][2:]
        with pytest.raises(VectorMismatch):
            key_schedule_kind.check(case)


# -- GroupContext --------------------------------------------------------------------------------


def test_group_context_round_trips_with_extensions() -> None:
    context = GroupContext(3, b"g", 2**64 - 1, b"t", b"c", (Extension(0xFF00, b"x"), Extension(3, b"")))
    assert GroupContext.from_bytes(context.to_bytes()) == context


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x00\x02" + b[2:], "protocol version 2"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b[:4] + b"\x7f" + b[5:], "past the end"),  # group_id longer than what is left
    ],
)
def test_a_malformed_group_context_is_refused(mutate: Any, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as e:
        GroupContext.from_bytes(mutate(CONTEXT.to_bytes()))
    assert e.value.code == "mls_malformed"


def test_a_group_context_with_an_extension_type_twice_is_refused() -> None:
    context = GroupContext(1, b"g", 0, b"t", b"c", (Extension(5, b""), Extension(5, b"")))
    with pytest.raises(DecodeError, match="twice"):
        GroupContext.from_bytes(context.to_bytes())


# -- the schedule ------------------------------------------------------------------------------------


def test_a_joiner_reaches_the_members_secrets() -> None:
    psk = bytes([9]) * 32
    member = derive_epoch_secrets(SUITE1, INIT, COMMIT, psk, CONTEXT)
    assert joiner_secret(SUITE1, INIT, COMMIT, CONTEXT) == member.joiner_secret
    assert epoch_secrets_from_joiner(SUITE1, member.joiner_secret, psk, CONTEXT) == member


def test_no_commit_secret_and_no_psk_are_the_zero_secrets() -> None:
    assert derive_epoch_secrets(SUITE1, INIT, None, None, CONTEXT) == derive_epoch_secrets(
        SUITE1, INIT, bytes(32), bytes(32), CONTEXT
    )


def test_every_input_changes_every_epoch_secret() -> None:
    base = derive_epoch_secrets(SUITE1, INIT, COMMIT, None, CONTEXT)
    others = [
        derive_epoch_secrets(SUITE1, COMMIT, COMMIT, None, CONTEXT),
        derive_epoch_secrets(SUITE1, INIT, INIT, None, CONTEXT),
        derive_epoch_secrets(SUITE1, INIT, COMMIT, INIT, CONTEXT),
        derive_epoch_secrets(SUITE1, INIT, COMMIT, None, GroupContext(1, b"group", 8, bytes(32), b"\x01" * 32)),
    ]
    for other in others:
        for name in ("sender_data_secret", "encryption_secret", "epoch_authenticator", "init_secret"):
            assert getattr(other, name) != getattr(base, name)


def test_wrong_lengths_and_a_foreign_suite_are_refused() -> None:
    with pytest.raises(LocalProtocolError, match="init_secret of 31 bytes"):
        derive_epoch_secrets(SUITE1, INIT[:31], COMMIT, None, CONTEXT)
    with pytest.raises(LocalProtocolError, match="psk_secret of 33 bytes"):
        derive_epoch_secrets(SUITE1, INIT, COMMIT, bytes(33), CONTEXT)
    with pytest.raises(RemoteProtocolError, match="cipher suite 2, not 1"):
        derive_epoch_secrets(SUITE1, INIT, COMMIT, None, GroupContext(2, b"g", 0, b"", b""))


def test_epoch_secrets_never_show_in_repr() -> None:
    secrets = derive_epoch_secrets(SUITE1, INIT, COMMIT, None, CONTEXT)
    assert secrets.encryption_secret.hex() not in repr(secrets)
    assert repr(secrets) == "EpochSecrets(<secret>)"


def test_the_exporter_binds_label_context_and_length() -> None:
    secret = derive_epoch_secrets(SUITE1, INIT, COMMIT, None, CONTEXT).exporter_secret
    out = mls_exporter(SUITE1, secret, b"app", b"ctx", 32)
    assert len(out) == 32
    assert mls_exporter(SUITE1, secret, b"app2", b"ctx", 32) != out
    assert mls_exporter(SUITE1, secret, b"app", b"ctx2", 32) != out
    assert mls_exporter(SUITE1, secret, b"app", b"ctx", 16) != out[:16]  # the length is in the label
    with pytest.raises(LocalProtocolError, match="8161 bytes"):
        mls_exporter(SUITE1, secret, b"app", b"ctx", 255 * 32 + 1)


def test_welcome_key_and_nonce() -> None:
    welcome = derive_epoch_secrets(SUITE1, INIT, COMMIT, None, CONTEXT).welcome_secret
    key, nonce = welcome_key_nonce(SUITE1, welcome)
    assert key == SUITE1.expand_with_label(welcome, b"key", b"", 16)
    assert nonce == SUITE1.expand_with_label(welcome, b"nonce", b"", 12)
