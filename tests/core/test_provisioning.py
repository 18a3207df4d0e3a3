"""Device linking (core.provisioning): link codes, commitments and the sealed account payload."""

from __future__ import annotations

import base64
import functools
import re
from typing import Any

import pytest

from sonet.core import canonical, limits
from sonet.core.crypto import CryptoMode, CryptoPolicy, HpkePrivateKey, HpkePublicKey, SigningKey, sha256
from sonet.core.errors import DecryptError, LocalProtocolError, RemoteProtocolError, VerifyError
from sonet.core.provisioning import (
    COMMITMENT_LABEL,
    INFO_PREFIX,
    Provisioning,
    check_commitment,
    link_commitment,
    make_link_code,
    open_provisioning,
    parse_link_code,
    seal_provisioning,
)

from .pairs import flip_bit, identity, rng

HYBRID, CLASSICAL = CryptoMode.HYBRID, CryptoMode.CLASSICAL
SLOT = bytes(range(100, 116))
ACCOUNT = "alice@alpha.example"
URL = "ws://127.0.0.1:7400"
NODE_FP = identity(HYBRID, "node alpha.example").public.fingerprint
CODE_RE = re.compile(r"[a-z2-7]{26}\.[a-z2-7]{26}")


@functools.cache
def ephemeral(mode: CryptoMode = HYBRID, name: str = "new laptop") -> HpkePrivateKey:
    return HpkePrivateKey.generate(mode, rng(("link", mode.value, name)))


def account_key() -> SigningKey:
    return identity(HYBRID, "alice account")


def code(slot: bytes = SLOT, mode: CryptoMode = HYBRID) -> str:
    return make_link_code(slot, ephemeral(mode).public)


def payload(**changes: Any) -> Provisioning:
    args: dict[str, Any] = dict(
        account=ACCOUNT, account_key=account_key().private_bytes(), node_url=URL, node_fingerprint=NODE_FP, device_list_version=3
    )
    args.update(changes)
    return Provisioning(**args)


def seal(p: Provisioning | None = None, **kw: Any) -> bytes:
    args: dict[str, Any] = dict(to=ephemeral().public, slot=SLOT)
    args.update(kw)
    return seal_provisioning(p or payload(), **args)


def open_(body: bytes, **kw: Any) -> Provisioning:
    args: dict[str, Any] = dict(key=ephemeral(), slot=SLOT)
    args.update(kw)
    return open_provisioning(body, **args)


def payload_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "v": 1,
        "account": ACCOUNT,
        "account_key": account_key().private_bytes(),
        "node_url": URL,
        "node_fingerprint": NODE_FP,
        "device_list_version": 3,
    }
    fields.update(changes)
    return fields


def raw_box(payload: Any, slot: bytes = SLOT) -> bytes:
    """A payload sealed exactly as seal_provisioning would, but with arbitrary contents."""
    plaintext = payload if isinstance(payload, bytes) else canonical.dumps(payload)
    return ephemeral().public.seal(plaintext, INFO_PREFIX + slot)


# Link codes ---------------------------------------------------------------------------------


def test_link_code_format() -> None:
    c = code()
    assert CODE_RE.fullmatch(c)
    slot_text, check_text = c.split(".")
    assert base64.b32decode(slot_text.upper() + "======") == SLOT
    expected = sha256(b"sonet-link-commitment-v1", ephemeral().public.to_bytes())[:16]
    assert COMMITMENT_LABEL == b"sonet-link-commitment-v1"
    assert base64.b32decode(check_text.upper() + "======") == expected == link_commitment(ephemeral().public)


def test_link_code_round_trip() -> None:
    assert parse_link_code(code()) == (SLOT, link_commitment(ephemeral().public))
    assert parse_link_code("  " + code().upper() + "\n") == parse_link_code(code())


def test_codes_differ_per_slot_and_key() -> None:
    assert code() != code(bytes(16))
    assert code().split(".")[1] != code(mode=CLASSICAL).split(".")[1]
    assert code().split(".")[1] != make_link_code(SLOT, ephemeral(HYBRID, "other").public).split(".")[1]


@pytest.mark.parametrize("slot", [b"", b"\0" * 15, b"\0" * 17, "x" * 16], ids=["empty", "short", "long", "str"])
def test_make_link_code_refuses_bad_slot(slot: Any) -> None:
    with pytest.raises(LocalProtocolError):
        make_link_code(slot, ephemeral().public)


def test_make_link_code_refuses_a_non_key() -> None:
    with pytest.raises(LocalProtocolError):
        make_link_code(SLOT, "key")  # type: ignore[arg-type]


def _good() -> tuple[str, str]:
    slot_text, check_text = code().split(".")
    return slot_text, check_text


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".",
        "nodot",
        "{s}",
        "{s}.{c}.{c}",
        "{s}.",
        ".{c}",
        "{s}.{c}a",
        "{s}a.{c}",
        "{s}.{c_short}",
        "{s_short}.{c}",
        "{s}.{c_1}",
        "{s}.{c_8}",
        "{s}.{c}======",
        "{s} .{c}",
        "{s}-{c}",
        "{s}.{c_bits}",
        None,
    ],
    ids=[
        "empty",
        "dot",
        "nodot",
        "slot-only",
        "three-parts",
        "no-check",
        "no-slot",
        "check-long",
        "slot-long",
        "check-short",
        "slot-short",
        "digit-1",
        "digit-8",
        "padding",
        "inner-space",
        "dash",
        "non-canonical-bits",
        "not-text",
    ],
)
def test_malformed_link_code_is_refused(text: str | None) -> None:
    s, c = _good()
    # the 26th character carries 3 bits of data and 2 unused bits, which must be zero
    last = "abcdefghijklmnopqrstuvwxyz234567".index(c[-1])
    bits = c[:-1] + "abcdefghijklmnopqrstuvwxyz234567"[last ^ 1]
    value = (
        None
        if text is None
        else text.format(s=s, c=c, c_short=c[:-1], s_short=s[:-1], c_1=c[:-1] + "1", c_8="8" + c[1:], c_bits=bits)
    )
    with pytest.raises(LocalProtocolError):
        parse_link_code(value)  # type: ignore[arg-type]


def test_check_commitment() -> None:
    _, commitment = parse_link_code(code())
    assert check_commitment(commitment, ephemeral().public)
    assert check_commitment(commitment, ephemeral().public.to_bytes())  # the encoding LinkPending carries
    assert not check_commitment(commitment, ephemeral().public.to_bytes() + b"\0")
    assert not check_commitment(commitment, "key")  # type: ignore[arg-type]
    assert not check_commitment(commitment, ephemeral(HYBRID, "attacker").public)
    assert not check_commitment(commitment, ephemeral(CLASSICAL).public)
    assert not check_commitment(flip_bit(commitment, 0), ephemeral().public)
    assert not check_commitment(commitment[:15], ephemeral().public)
    assert not check_commitment(b"", ephemeral().public)


# Sealing and opening --------------------------------------------------------------------------


def test_round_trip() -> None:
    opened = open_(seal())
    assert opened == payload()
    assert opened.signing_key().public == account_key().public
    # The received key works as the account key.
    signature = opened.signing_key().sign(b"sonet-device-list-v1", b"body")
    account_key().public.verify(b"sonet-device-list-v1", b"body", signature)


def test_round_trip_normalises_local_inputs() -> None:
    opened = open_(seal(payload(account="Alice@Alpha.Example", node_fingerprint=NODE_FP.upper(), device_list_version=0)))
    assert (opened.account, opened.node_fingerprint, opened.device_list_version) == (ACCOUNT, NODE_FP, 0)


def test_full_flow_through_the_link_code() -> None:
    # New device shows the code for its key; the old device parses it, checks the key the
    # node hands over (as bytes, as in LinkPending) and seals; the new device opens.
    shown = make_link_code(SLOT, ephemeral().public.to_bytes())
    assert shown == code()
    slot, commitment = parse_link_code(shown)
    pending = ephemeral().public.to_bytes()
    assert check_commitment(commitment, pending)
    body = seal_provisioning(payload(), to=HpkePublicKey.from_bytes(pending), slot=slot, commitment=commitment)
    assert open_provisioning(body, key=ephemeral(), slot=slot) == payload()


def test_classical_key_round_trips_when_the_policy_allows_it() -> None:
    key = ephemeral(CLASSICAL)
    body = seal(to=key.public, policy=CryptoPolicy(CLASSICAL))
    assert open_(body, key=key).account == ACCOUNT


def test_classical_key_is_refused_by_default() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        seal(to=ephemeral(CLASSICAL).public)
    assert info.value.code == "crypto_mode_refused"


def test_repr_does_not_show_the_account_key() -> None:
    text = repr(open_(seal()))
    assert "account_key" not in text
    assert account_key().private_bytes().hex()[:16] not in text


def test_private_key_is_not_visible_in_the_sealed_body() -> None:
    body = seal()
    assert account_key().private_bytes() not in body
    assert ACCOUNT.encode() not in body and URL.encode() not in body


def test_key_that_does_not_match_the_commitment_is_refused() -> None:
    # The node (or anyone on the way) swapped in its own ephemeral key.
    _, commitment = parse_link_code(code())
    attacker = ephemeral(HYBRID, "attacker").public
    assert not check_commitment(commitment, attacker)
    with pytest.raises(VerifyError) as info:
        seal(to=attacker, commitment=commitment)
    assert info.value.code == "link_code_mismatch"
    assert open_(seal(commitment=commitment)).account == ACCOUNT


def test_typo_in_the_check_part_is_refused() -> None:
    s, c = _good()
    typo = c[:3] + ("a" if c[3] != "a" else "b") + c[4:]
    _, commitment = parse_link_code(f"{s}.{typo}")
    assert not check_commitment(commitment, ephemeral().public)
    with pytest.raises(VerifyError) as info:
        seal(commitment=commitment)
    assert info.value.code == "link_code_mismatch"


def test_wrong_slot_does_not_open() -> None:
    body = seal()
    with pytest.raises(DecryptError):
        open_(body, slot=bytes(16))
    # A payload sealed for another slot (same key) does not open under ours either.
    other = seal(slot=bytes(16))
    with pytest.raises(DecryptError):
        open_(other)
    assert open_(other, slot=bytes(16)).account == ACCOUNT


def test_wrong_ephemeral_key_does_not_open() -> None:
    with pytest.raises(DecryptError):
        open_(seal(), key=ephemeral(HYBRID, "attacker"))
    with pytest.raises(DecryptError):
        open_(seal(), key=ephemeral(CLASSICAL))


@pytest.mark.parametrize("where", [0, 500, 1119, 1120, 1300, -16, -1])
def test_tampered_payload_does_not_open(where: int) -> None:
    body = seal()
    with pytest.raises(DecryptError):
        open_(flip_bit(body, (where % len(body)) * 8))


def test_truncated_payload_does_not_open() -> None:
    body = seal()
    for cut in (body[:-1], body[:100], b""):
        with pytest.raises(DecryptError):
            open_(cut)


def test_sealed_payload_fits_the_node_limit() -> None:
    body = seal(payload(node_url="wss://" + "n" * (limits.MAX_URL_LEN - 6)))
    assert len(body) <= limits.MAX_PROVISIONING_BYTES


def test_oversized_body_is_refused_before_decryption() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        open_(b"\0" * (limits.MAX_PROVISIONING_BYTES + 1))
    assert info.value.code == "provisioning_malformed"


@pytest.mark.parametrize("slot", [b"", b"\0" * 15, "x" * 16], ids=["empty", "short", "str"])
def test_bad_slot_is_refused(slot: Any) -> None:
    with pytest.raises(LocalProtocolError):
        open_(seal(), slot=slot)
    with pytest.raises(LocalProtocolError):
        seal(slot=slot)


def test_hand_built_payload_matches_the_format() -> None:
    assert open_(raw_box(payload_fields())).account == ACCOUNT


@pytest.mark.parametrize(
    "payload",
    [
        payload_fields(v=2),
        payload_fields(extra=1),
        {k: v for k, v in payload_fields().items() if k != "node_url"},
        payload_fields(account="alice"),
        payload_fields(account="Alice@alpha.example"),
        payload_fields(account_key=b"not a key"),
        payload_fields(account_key=canonical.dumps({"mode": "hybrid"})),
        payload_fields(account_key=canonical.dumps({"mode": "hybrid", "ed25519": b"\0" * 31, "mldsa65": b"\0" * 32})),
        payload_fields(account_key="text"),
        payload_fields(node_url="http://alpha.example"),
        payload_fields(node_url="ws://"),
        payload_fields(node_url="ws://a b"),
        payload_fields(node_url="ws://" + "a" * limits.MAX_URL_LEN),
        payload_fields(node_fingerprint="abc"),
        payload_fields(node_fingerprint=NODE_FP.upper()),
        payload_fields(device_list_version=-1),
        payload_fields(device_list_version="3"),
        [1, 2],
        b"garbage",
        canonical.dumps(payload_fields()) + b"\0",
    ],
    ids=[
        "version",
        "extra",
        "missing-url",
        "account",
        "account-case",
        "key-garbage",
        "key-no-seeds",
        "key-short-seed",
        "key-str",
        "url-scheme",
        "url-empty-host",
        "url-space",
        "url-long",
        "fp-short",
        "fp-upper",
        "dl-version-negative",
        "dl-version-str",
        "list",
        "garbage",
        "trailing",
    ],
)
def test_malformed_payload_is_refused(payload: Any) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        open_(raw_box(payload))
    assert info.value.code == "provisioning_malformed"


@pytest.mark.parametrize(
    "changes",
    [
        {"account": "alice"},
        {"account_key": b"not a key"},
        {"account_key": "text"},
        {"node_url": "http://alpha.example"},
        {"node_url": "ws://" + "a" * limits.MAX_URL_LEN},
        {"node_fingerprint": "not a fingerprint"},
        {"device_list_version": -1},
        {"device_list_version": 2**63},
    ],
    ids=["account", "key", "key-str", "url", "url-long", "fingerprint", "dl-negative", "dl-huge"],
)
def test_seal_refuses_bad_payload(changes: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        seal(payload(**changes))


def test_seal_refuses_a_non_key_recipient() -> None:
    with pytest.raises(LocalProtocolError):
        seal(to=ephemeral().public.to_bytes())
    with pytest.raises(LocalProtocolError):
        seal_provisioning(payload_fields(), to=ephemeral().public, slot=SLOT)  # type: ignore[arg-type]
