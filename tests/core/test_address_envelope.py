"""Addresses (core.address), envelope bounds (core.envelope) and invite tokens (core.invite).

Envelopes are checked the way a node sees them: hand-built msgpack decoded through the
client-API frames that carry them.
"""

from __future__ import annotations

from typing import Any

import pytest

from sonet.core import limits
from sonet.core.address import Address, is_address, parse_address, validate_node_name
from sonet.core.client_api import Deliver, Delivery, SendBatch
from sonet.core.crypto import CryptoMode, SigningKey
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.invite import SECRET_BYTES, hash_invite_secret, make_invite, parse_invite
from sonet.core.wire import decode_frame, encode_frame, packb

from .pairs import identity

# Addresses ---------------------------------------------------------------------------------

VALID = [
    ("alice@alpha.example", Address("alice", "alpha.example")),
    ("Alice@Alpha.EXAMPLE", Address("alice", "alpha.example")),
    ("  bob@beta.example\n", Address("bob", "beta.example")),
    ("a@b", Address("a", "b")),
    ("a.b-c_d9@x-1.y2.z", Address("a.b-c_d9", "x-1.y2.z")),
    ("u" * 64 + "@node", Address("u" * 64, "node")),
    ("x@" + "n" * 63 + ".example", Address("x", "n" * 63 + ".example")),
    ("x@" + ".".join(["n" * 61] * 4), Address("x", ".".join(["n" * 61] * 4))),  # 247 chars
    ("0@0", Address("0", "0")),
]

INVALID = {
    "empty": "",
    "no-at": "alice.alpha.example",
    "two-at": "alice@alpha@example",
    "double-at": "alice@@alpha.example",
    "no-user": "@alpha.example",
    "no-node": "alice@",
    "space-in-user": "al ice@alpha.example",
    "bang": "alice!@alpha.example",
    "plus": "alice+tag@alpha.example",
    "leading-dot": ".alice@alpha.example",
    "trailing-dot-user": "alice.@alpha.example",
    "leading-underscore": "_alice@alpha.example",
    "user-too-long": "u" * 65 + "@alpha.example",
    "underscore-in-node": "alice@alpha_beta.example",
    "node-trailing-dot": "alice@alpha.example.",
    "node-empty-label": "alice@alpha..example",
    "node-leading-hyphen": "alice@-alpha.example",
    "node-trailing-hyphen": "alice@alpha-.example",
    "label-too-long": "alice@" + "n" * 64 + ".example",
    "node-too-long": "alice@" + ".".join(["n" * 63] * 4),  # 255 chars
    "whole-too-long": "a" * 400 + "@b",
    "non-ascii": "älice@alpha.example",
    "non-ascii-node": "alice@alphä.example",
    "inner-space": "alice@alpha .example",
    "nul": "alice\0@alpha.example",
}


@pytest.mark.parametrize("text, expected", VALID, ids=[v[0][:20] for v in VALID])
def test_valid_addresses_parse_and_normalise(text: str, expected: Address) -> None:
    addr = parse_address(text)
    assert addr == expected
    assert str(addr) == f"{expected.user}@{expected.node}"
    assert parse_address(str(addr)) == addr  # normal form is a fixed point
    assert parse_address(text, remote=True) == expected
    assert is_address(text)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_addresses_are_refused(name: str) -> None:
    text = INVALID[name]
    with pytest.raises(LocalProtocolError, match="invalid"):
        parse_address(text)
    with pytest.raises(RemoteProtocolError, match="invalid"):
        parse_address(text, remote=True)
    assert not is_address(text)


@pytest.mark.parametrize("value", [None, b"alice@alpha.example", 42, ["alice@alpha.example"]], ids=repr)
def test_non_string_addresses_are_refused(value: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_address(value, remote=True)
    assert not is_address(value)


def test_node_names() -> None:
    assert validate_node_name("Alpha.Example") == "alpha.example"
    assert validate_node_name("localhost") == "localhost"
    for bad in ("", ".", "alpha..example", "-a", "a-", "a_b", "a b", "a." + "b" * 64, ".".join(["n" * 63] * 4)):
        with pytest.raises(LocalProtocolError):
            validate_node_name(bad)
        with pytest.raises(RemoteProtocolError):
            validate_node_name(bad, remote=True)


def test_address_is_frozen() -> None:
    addr = parse_address("alice@alpha.example")
    with pytest.raises(AttributeError):
        addr.user = "mallory"  # type: ignore[misc]
    assert hash(addr) == hash(Address("alice", "alpha.example"))


# Envelopes -----------------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "v": ENVELOPE_VERSION,
    "id": bytes(range(16)),
    "to": "bob@beta.example",
    "device": 1,
    "expires": 1_700_000_000_000,
    "kind": int(Kind.SEALED),
    "body": b"ciphertext",
}
FIELDS = ["v", "id", "to", "device", "expires", "kind", "body"]


def envelope_array(**changes: Any) -> list[Any]:
    values = {**GOOD, **changes}
    return [values[f] for f in FIELDS]


def batch(*envelopes: list[Any]) -> bytes:
    """A SendBatch frame (tag 15) built by hand, bypassing the encoder's own checks."""
    return packb([SendBatch.TAG, 7, list(envelopes), []])  # no access tokens


def decode_envelope(**changes: Any) -> Envelope:
    frame = decode_frame(batch(envelope_array(**changes)))
    assert isinstance(frame, SendBatch) and frame.request == 7
    return frame.envelopes[0]


ENVELOPE_OK = {
    "as-built": {},
    "device-max": {"device": 2**31 - 1},
    "expires-max": {"expires": 2**63 - 1},
    "expires-min": {"expires": 1},
    "ephemeral": {"kind": int(Kind.EPHEMERAL)},
    "group": {"kind": int(Kind.GROUP)},
    "empty-body": {"body": b""},
    "body-max": {"body": b"\0" * limits.MAX_ENVELOPE_BODY},
    "ephemeral-body-max": {"kind": int(Kind.EPHEMERAL), "body": b"\0" * limits.MAX_EPHEMERAL_BODY},
    "to-normalised-later": {"to": "Bob@Beta.Example"},
}

ENVELOPE_BAD = {
    "version-0": {"v": 0},
    "version-2": {"v": 2},
    "id-empty": {"id": b""},
    "id-15": {"id": bytes(15)},
    "id-17": {"id": bytes(17)},
    "id-str": {"id": "0123456789abcdef"},
    "to-invalid": {"to": "bob"},
    "to-two-at": {"to": "bob@beta@example"},
    "to-bytes": {"to": b"bob@beta.example"},
    "device-0": {"device": 0},
    "device-negative": {"device": -1},
    "device-2^31": {"device": 2**31},
    "device-bool": {"device": True},
    "device-none": {"device": None},
    "expires-0": {"expires": 0},
    "expires-negative": {"expires": -5},
    "expires-2^63": {"expires": 2**63},
    "kind-0": {"kind": 0},
    "kind-4": {"kind": 4},
    "kind-str": {"kind": "sealed"},
    "body-over": {"body": b"\0" * (limits.MAX_ENVELOPE_BODY + 1)},
    "ephemeral-body-over": {"kind": int(Kind.EPHEMERAL), "body": b"\0" * (limits.MAX_EPHEMERAL_BODY + 1)},
    "body-none": {"body": None},
    "body-str": {"body": "text"},
}


@pytest.mark.parametrize("name", sorted(ENVELOPE_OK))
def test_envelope_within_bounds_decodes(name: str) -> None:
    changes = ENVELOPE_OK[name]
    env = decode_envelope(**changes)
    assert env == Envelope(**{**GOOD, **changes})
    # and the encoder produces exactly what we hand-built
    assert encode_frame(SendBatch(request=7, envelopes=(env,))) == batch(envelope_array(**changes))


@pytest.mark.parametrize("name", sorted(ENVELOPE_BAD))
def test_envelope_out_of_bounds_is_refused(name: str) -> None:
    with pytest.raises(RemoteProtocolError, match="Envelope|invalid frame"):
        decode_envelope(**ENVELOPE_BAD[name])


@pytest.mark.parametrize("name", sorted(n for n in ENVELOPE_BAD if not n.endswith(("-str", "-bytes", "-bool", "-none"))))
def test_encoder_refuses_out_of_bounds_envelopes(name: str) -> None:
    # Right types, wrong values: the encoder must refuse to send what the peer would reject.
    env = Envelope(**{**GOOD, **ENVELOPE_BAD[name]})
    with pytest.raises(LocalProtocolError):
        encode_frame(SendBatch(request=1, envelopes=(env,)))


@pytest.mark.parametrize("arity", [0, 6, 8])
def test_envelope_with_the_wrong_number_of_fields_is_refused(arity: int) -> None:
    values = (envelope_array() + [b"extra"])[:arity]
    with pytest.raises(RemoteProtocolError, match="Envelope"):
        decode_frame(batch(values))


def test_envelope_must_be_an_array() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_frame(packb([SendBatch.TAG, 7, [dict(GOOD)], []]))


def test_batch_size_bounds() -> None:
    with pytest.raises(RemoteProtocolError, match="batch"):
        decode_frame(packb([SendBatch.TAG, 1, [], []]))
    full = decode_frame(packb([SendBatch.TAG, 1, [envelope_array()] * limits.MAX_ENVELOPES_PER_FRAME, []]))
    assert len(full.envelopes) == limits.MAX_ENVELOPES_PER_FRAME
    with pytest.raises(RemoteProtocolError, match="batch"):
        decode_frame(packb([SendBatch.TAG, 1, [envelope_array()] * (limits.MAX_ENVELOPES_PER_FRAME + 1), []]))


def test_one_bad_envelope_spoils_the_whole_batch() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_frame(batch(envelope_array(), envelope_array(device=0), envelope_array()))


def test_envelope_checked_inside_deliveries_too() -> None:
    ok = decode_frame(packb([Deliver.TAG, [[envelope_array(), 123]]]))
    assert ok == Deliver(items=(Delivery(envelope=Envelope(**GOOD), stored_at=123),))
    with pytest.raises(RemoteProtocolError):
        decode_frame(packb([Deliver.TAG, [[envelope_array(kind=9), 123]]]))


def test_envelope_names_no_sender() -> None:
    assert FIELDS == [f for f, _ in Envelope._wire_fields]
    assert not {"from", "sender"} & set(FIELDS)


# Invites -------------------------------------------------------------------------------------


def node_fp(name: str = "node") -> str:
    key: SigningKey = identity(CryptoMode.HYBRID, name)
    return key.public.fingerprint


def test_invite_round_trip() -> None:
    secret = bytes(range(SECRET_BYTES))
    token = make_invite(node_fp(), secret)
    fp, text = parse_invite(token)
    assert fp == node_fp()
    assert len(text) == 32 and text == text.lower()
    assert hash_invite_secret(text) == hash_invite_secret(parse_invite(make_invite(node_fp(), secret))[1])
    assert hash_invite_secret(text) != hash_invite_secret(parse_invite(make_invite(node_fp(), b"\1" * SECRET_BYTES))[1])
    assert len(hash_invite_secret(text)) == 32


def test_invite_parsing_is_forgiving_about_case_spacing_and_dashes() -> None:
    token = make_invite(node_fp(), b"\xab" * SECRET_BYTES)
    fp, secret = token.split(".")
    grouped = "-".join(fp[i : i + 4] for i in range(0, 32, 4))
    for variant in (token.upper(), f"  {token}\n", f"{grouped}.{secret}", f"{grouped.upper()}.{secret.upper()}"):
        assert parse_invite(variant) == parse_invite(token)


MALFORMED_INVITES = {
    "empty": "",
    "no-dot": node_fp() + "a" * 32,
    "two-dots": node_fp() + ".aaaa.bbbb",
    "secret-short": node_fp() + "." + "a" * 31,
    "secret-long": node_fp() + "." + "a" * 33,
    "secret-empty": node_fp() + ".",
    "fp-short": node_fp()[:-1] + "." + "a" * 32,
    "fp-long": node_fp() + "a." + "a" * 32,
    "fp-bad-alphabet": "0" + node_fp()[1:] + "." + "a" * 32,
    "fp-empty": "." + "a" * 32,
    "only-dot": ".",
}


@pytest.mark.parametrize("name", sorted(MALFORMED_INVITES))
def test_malformed_invites_are_refused(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        parse_invite(MALFORMED_INVITES[name])
