"""Sender certificates (core.certs): only verify_certificate yields a trusted certificate."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from sonet.core import canonical, limits
from sonet.core.certs import CERT_LABEL, SenderCertificate, certificate_node, issue_certificate, verify_certificate
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.errors import LocalProtocolError, RemoteProtocolError, VerifyError

from .pairs import flip_bit, identity

HYBRID = CryptoMode.HYBRID
NODE = "alpha.example"
ACCOUNT = "alice@alpha.example"
NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000
SKEW = limits.MAX_CERT_CLOCK_SKEW_MS
MAX = limits.MAX_SENDER_CERT_VALIDITY_MS


def node_key(name: str = NODE, mode: CryptoMode = HYBRID) -> SigningKey:
    return identity(mode, f"node {name}")


def device(name: str = "alice phone", mode: CryptoMode = HYBRID) -> SigningKey:
    return identity(mode, name)


def issue(**kw: Any) -> bytes:
    args: dict[str, Any] = dict(node=NODE, account=ACCOUNT, device=1, identity=device().public, now=NOW, validity_ms=DAY)
    key = kw.pop("key", node_key())
    args.update(kw)
    return issue_certificate(key, **args)


def verify(raw: bytes, **kw: Any) -> SenderCertificate:
    args: dict[str, Any] = dict(node_key=node_key().public, node=NODE, now=NOW + 1)
    args.update(kw)
    return verify_certificate(raw, **args)


def body_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "v": 1,
        "node": NODE,
        "account": ACCOUNT,
        "device": 1,
        "identity": device().public.to_bytes(),
        "issued": NOW,
        "expires": NOW + DAY,
    }
    fields.update(changes)
    return fields


def signed(fields: dict[str, Any], key: SigningKey | None = None, label: bytes = CERT_LABEL) -> bytes:
    """A certificate around ``fields`` with a valid signature by ``key`` (a forger's tool)."""
    body = canonical.dumps(fields)
    return canonical.dumps({"body": body, "sig": (key or node_key()).sign(label, body)})


def expect(code: str, raw: bytes, **kw: Any) -> None:
    with pytest.raises(VerifyError) as info:
        verify(raw, **kw)
    assert info.value.code == code


def expect_malformed(raw: Any, **kw: Any) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        verify(raw, **kw)
    assert not isinstance(info.value, VerifyError)
    assert info.value.code == "certificate_malformed"


@pytest.mark.parametrize("mode", list(CryptoMode), ids=lambda m: m.value)
def test_round_trip(mode: CryptoMode) -> None:
    key = node_key(mode=mode)
    raw = issue(key=key, identity=device(mode=mode).public, device=7)
    cert = verify(raw, node_key=key.public)
    assert (cert.node, cert.account, cert.device) == (NODE, ACCOUNT, 7)
    assert cert.identity == device(mode=mode).public
    assert (cert.issued, cert.expires) == (NOW, NOW + DAY)
    assert cert.raw == raw
    assert cert.matches(device(mode=mode).public, ACCOUNT)


def test_hand_built_certificate_matches_the_format() -> None:
    # The forgeries below rely on this: same body bytes as issue_certificate produces.
    assert canonical.loads(signed(body_fields()))["body"] == canonical.loads(issue())["body"]
    assert verify(signed(body_fields())).account == ACCOUNT


def test_default_validity_is_a_day() -> None:
    raw = issue_certificate(node_key(), node=NODE, account=ACCOUNT, device=1, identity=device().public, now=NOW)
    assert verify(raw).expires == NOW + limits.DEFAULT_SENDER_CERT_VALIDITY_MS


def test_issue_normalises_names() -> None:
    cert = verify(issue(node="Alpha.Example", account="Alice@ALPHA.example"))
    assert (cert.node, cert.account) == (NODE, ACCOUNT)


def test_matches_refuses_another_identity_or_account() -> None:
    cert = verify(issue())
    assert cert.matches(device().public, "ALICE@alpha.example")
    assert not cert.matches(device("mallory phone").public, ACCOUNT)
    assert not cert.matches(device().public, "bob@alpha.example")
    assert not cert.matches(device().public, "alice@beta.example")
    assert not cert.matches(device().public, "not an address")
    # Same key material in another mode is another identity.
    assert not cert.matches(device(mode=CryptoMode.CLASSICAL).public, ACCOUNT)


def test_repr_does_not_dump_the_raw_certificate() -> None:
    assert "raw" not in repr(verify(issue()))


# Validity window -------------------------------------------------------------------------


def test_expired_exactly_at_expiry() -> None:
    raw = issue()
    assert verify(raw, now=NOW + DAY - 1).expires == NOW + DAY
    expect("certificate_expired", raw, now=NOW + DAY)
    expect("certificate_expired", raw, now=NOW + 30 * DAY)


def test_not_yet_valid_beyond_the_clock_skew() -> None:
    raw = issue()
    assert verify(raw, now=NOW - SKEW).issued == NOW
    expect("certificate_not_yet_valid", raw, now=NOW - SKEW - 1)
    expect("certificate_not_yet_valid", raw, now=0)


def test_validity_longer_than_the_maximum_is_refused() -> None:
    assert verify(signed(body_fields(expires=NOW + MAX))).expires == NOW + MAX
    expect("certificate_too_long", signed(body_fields(expires=NOW + MAX + 1)))
    expect("certificate_too_long", signed(body_fields(issued=0, expires=2**62)), now=NOW)


@pytest.mark.parametrize("validity", [0, -1, MAX + 1, "1"], ids=["zero", "negative", "too-long", "str"])
def test_issue_refuses_bad_validity(validity: Any) -> None:
    with pytest.raises(LocalProtocolError):
        issue(validity_ms=validity)


@pytest.mark.parametrize("changes", [{"issued": NOW + DAY}, {"issued": NOW + DAY + 1}, {"issued": -1}], ids=["empty", "reversed", "negative"])
def test_empty_or_reversed_window_is_malformed(changes: dict[str, Any]) -> None:
    expect_malformed(signed(body_fields(**changes)))


# Signatures ------------------------------------------------------------------------------


def test_certificate_signed_by_another_node_key_is_forged() -> None:
    forged = issue(key=node_key("beta.example"))
    expect("certificate_forged", forged)
    expect("certificate_forged", signed(body_fields(), node_key("beta.example")))


def test_certificate_verified_with_another_nodes_key_is_forged() -> None:
    expect("certificate_forged", issue(), node_key=node_key("beta.example").public)


def test_signature_under_another_label_is_forged() -> None:
    expect("certificate_forged", signed(body_fields(), label=b"sonet-device-list-v1"))
    expect("certificate_forged", signed(body_fields(), label=b"sonet-device-record-v1"))


@pytest.mark.parametrize(
    "changes",
    [
        {"node": "beta.example", "account": "alice@beta.example"},
        {"account": "mallory@alpha.example"},
        {"device": 2},
        {"identity": device("mallory phone").public.to_bytes()},
        {"issued": NOW - 1},
        {"expires": NOW + DAY + 1},
    ],
    ids=["node", "account", "device", "identity", "issued", "expires"],
)
def test_every_tampered_field_breaks_the_signature(changes: dict[str, Any]) -> None:
    outer = canonical.loads(issue())
    tampered = canonical.dumps({"body": canonical.dumps(body_fields(**changes)), "sig": outer["sig"]})
    expect("certificate_forged", tampered, node=changes.get("node", NODE))


@pytest.mark.parametrize("bit", [0, 7, 8 * 64, 8 * 64 + 5, -1])
def test_tampered_signature_is_forged(bit: int) -> None:
    outer = canonical.loads(issue())
    sig = outer["sig"]
    bad = flip_bit(sig, bit % (len(sig) * 8))
    expect("certificate_forged", canonical.dumps({"body": outer["body"], "sig": bad}))


def test_truncated_signature_is_forged() -> None:
    outer = canonical.loads(issue())
    expect("certificate_forged", canonical.dumps({"body": outer["body"], "sig": outer["sig"][:-1]}))
    expect("certificate_forged", canonical.dumps({"body": outer["body"], "sig": b""}))


# Node and account ------------------------------------------------------------------------


def test_certificate_from_another_node_than_expected_is_a_mismatch() -> None:
    # Signed by alpha's key and naming alpha, but the caller looked for beta's certificate.
    expect("certificate_mismatch", issue(), node="beta.example")


def test_node_certifying_an_account_of_another_node_is_a_mismatch() -> None:
    raw = signed(body_fields(account="bob@beta.example"))
    expect("certificate_mismatch", raw)
    with pytest.raises(LocalProtocolError, match="not one of its accounts"):
        issue(account="bob@beta.example")


def test_expected_node_name_is_normalised() -> None:
    assert verify(issue(), node="ALPHA.example").node == NODE


# Malformed input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"extra": 1},
        {"device": "1"},
        {"device": 0},
        {"device": 2**31},
        {"identity": b"not a key"},
        {"account": "alice"},
        {"account": "Alice@alpha.example"},
        {"expires": 1.5},
    ],
    ids=["version", "extra", "device-type", "device-0", "device-big", "identity", "account", "account-case", "float"],
)
def test_malformed_signed_body_is_refused(changes: dict[str, Any]) -> None:
    fields = body_fields(**changes)
    if "expires" in changes:
        body = cbor2.dumps(fields, canonical=True)  # floats are not plain data: build by hand
        raw = canonical.dumps({"body": body, "sig": node_key().sign(CERT_LABEL, body)})
    else:
        raw = signed(fields)
    expect_malformed(raw)


def test_invalid_node_name_in_a_signed_body_is_refused() -> None:
    expect("certificate_mismatch", signed(body_fields(node="bad_node")))
    with pytest.raises(LocalProtocolError):  # the caller's own argument is not a node name
        verify(signed(body_fields(node="bad_node")), node="bad_node")


def test_missing_field_is_refused() -> None:
    for name in body_fields():
        fields = body_fields()
        del fields[name]
        expect_malformed(signed(fields))


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xa0", b"not cbor", "text", None, b"\x00" * (limits.MAX_SENDER_CERT_BYTES + 1)],
    ids=["empty", "empty-map", "garbage", "str", "none", "too-large"],
)
def test_garbage_is_malformed(raw: Any) -> None:
    expect_malformed(raw)


def test_outer_structure_is_strict() -> None:
    raw = issue()
    outer = canonical.loads(raw)
    expect_malformed(raw + b"\0")
    expect_malformed(canonical.dumps({**outer, "x": 1}))
    expect_malformed(canonical.dumps({"body": outer["body"]}))
    expect_malformed(canonical.dumps([outer["body"], outer["sig"]]))
    expect_malformed(cbor2.dumps(dict(reversed(list(outer.items())))))


def test_non_canonical_body_is_malformed_even_when_validly_signed() -> None:
    fields = body_fields()
    body = cbor2.dumps(dict(reversed(list(fields.items()))))
    assert body != canonical.dumps(fields)
    expect_malformed(canonical.dumps({"body": body, "sig": node_key().sign(CERT_LABEL, body)}))


@pytest.mark.parametrize(
    "kw",
    [{"device": 0}, {"device": 2**31}, {"account": "bob"}, {"node": "bad_node"}, {"now": -1}, {"now": 2**63}],
    ids=["device-0", "device-big", "account", "node", "now-negative", "now-huge"],
)
def test_issue_refuses_bad_arguments(kw: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        issue(**kw)


def test_certificate_node_peeks_without_trusting() -> None:
    assert certificate_node(issue()) == NODE
    # A forgery still names its claimed node; verification is what refuses it.
    assert certificate_node(signed(body_fields(node="beta.example"), node_key("mallory"))) == "beta.example"
    with pytest.raises(RemoteProtocolError):
        certificate_node(b"garbage")
    with pytest.raises(RemoteProtocolError) as info:
        certificate_node(signed(body_fields(node="bad_node")))
    assert info.value.code == "certificate_malformed"
