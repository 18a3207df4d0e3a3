"""Directory entries (core.keydir.entry): canonical encoding, strict decoding, fuzzing."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonet.core import canonical, limits
from sonet.core.crypto import CryptoMode
from sonet.core.device_list import encode_account_identity, sign_device_list
from sonet.core.errors import LocalProtocolError, RemoteProtocolError, VerifyError
from sonet.core.keydir import DirectoryEntry, decode_entry, encode_entry

from ..pairs import identity

ACCOUNT = "alice@alpha.example"
NOW = 1_700_000_000_000
KEY = identity(CryptoMode.HYBRID, "alice account")
IDENTITY = encode_account_identity(KEY)
DEVICE_LIST = sign_device_list(
    KEY, account=ACCOUNT, version=1, devices=[identity(CryptoMode.CLASSICAL, "phone").public.fingerprint], now=NOW
)


def fields(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"v": 1, "account": ACCOUNT, "identity": IDENTITY, "device_list": DEVICE_LIST, "prev": -1, "at": NOW}
    base.update(changes)
    return base


def make(**changes: Any) -> bytes:
    f = fields(**changes)
    del f["v"]
    return encode_entry(**f)


def expect_malformed(raw: Any) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_entry(raw)
    assert not isinstance(info.value, VerifyError)
    assert info.value.code == "directory_malformed"


def test_round_trip() -> None:
    raw = make(prev=4, at=NOW + 5)
    entry = decode_entry(raw)
    assert entry == DirectoryEntry(account=ACCOUNT, identity=IDENTITY, device_list=DEVICE_LIST, prev=4, at=NOW + 5, raw=raw)
    assert canonical.loads(raw) == fields(prev=4, at=NOW + 5)


def test_encoding_is_canonical_and_deterministic() -> None:
    assert make() == make() == canonical.dumps(fields())
    assert make(account="Alice@Alpha.Example") == make()  # the account is normalised


def test_bounds_are_accepted_at_their_edges() -> None:
    assert decode_entry(make(prev=2**63 - 1, at=2**63 - 1)).prev == 2**63 - 1
    assert decode_entry(make(identity=b"", device_list=b"", at=0)).identity == b""
    assert decode_entry(make(device_list=b"\0" * limits.MAX_DEVICE_LIST_BYTES)).device_list


def test_repr_leaves_out_the_key_material() -> None:
    text = repr(decode_entry(make()))
    assert ACCOUNT in text and IDENTITY.hex()[:16] not in text


@pytest.mark.parametrize(
    "changes",
    [
        {"account": "alice"},
        {"account": "a@b@c"},
        {"account": 7},
        {"identity": "key"},
        {"device_list": None},
        {"device_list": b"\0" * (limits.MAX_DEVICE_LIST_BYTES + 1)},
        {"identity": b"\0" * limits.MAX_DIRECTORY_LEAF_BYTES},
        {"prev": -2},
        {"prev": 2**63},
        {"prev": True},
        {"at": -1},
        {"at": 2**63},
        {"at": 1.5},
    ],
    ids=lambda c: f"{next(iter(c))}={str(next(iter(c.values())))[:10]}",
)
def test_encode_refuses_bad_fields(changes: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        make(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"v": "1"},
        {"extra": 1},
        {"account": "Alice@alpha.example"},
        {"account": " alice@alpha.example"},
        {"account": "alice"},
        {"account": "alice@-alpha"},
        {"account": b"alice@alpha.example"},
        {"identity": "key"},
        {"device_list": [1]},
        {"device_list": b"\0" * (limits.MAX_DEVICE_LIST_BYTES + 1)},
        {"prev": -2},
        {"prev": 2**63},
        {"prev": False},
        {"prev": None},
        {"at": -1},
        {"at": 2**63},
    ],
    ids=lambda c: f"{next(iter(c))}={str(next(iter(c.values())))[:10]}",
)
def test_decode_refuses_malformed_fields(changes: dict[str, Any]) -> None:
    expect_malformed(canonical.dumps(fields(**changes)))


def test_decode_refuses_missing_fields() -> None:
    for name in fields():
        f = fields()
        del f[name]
        expect_malformed(canonical.dumps(f))


def test_decode_is_strict_about_the_encoding() -> None:
    raw = make()
    expect_malformed(raw + b"\0")
    expect_malformed(raw[:-1])
    expect_malformed(cbor2.dumps(dict(reversed(list(fields().items())))))  # keys not in canonical order
    expect_malformed(canonical.dumps([fields()]))
    expect_malformed(b"")
    expect_malformed(b"\0" * (limits.MAX_DIRECTORY_LEAF_BYTES + 1))
    expect_malformed(canonical.dumps(fields(identity=b"\0" * limits.MAX_DIRECTORY_LEAF_BYTES)))
    expect_malformed("text")
    expect_malformed(bytearray(raw))


# Fuzzing: junk is always one clear RemoteProtocolError --------------------------------------

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
near_entry = st.dictionaries(
    st.sampled_from(list(fields()) + ["x"]),
    plain | st.sampled_from([1, -1, 0, ACCOUNT, IDENTITY, 2**63, "Alice@alpha.example"]),
    max_size=7,
)


def decodes_or_is_malformed(raw: bytes) -> None:
    try:
        entry = decode_entry(raw)
    except RemoteProtocolError as exc:
        assert exc.code == "directory_malformed" and not isinstance(exc, VerifyError)
        return
    assert entry.raw == raw and canonical.dumps(fields(**{**{"v": 1}, **canonical.loads(raw)})) == raw


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(raw: bytes) -> None:
    decodes_or_is_malformed(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(near_entry)
def test_random_maps_never_crash(value: dict[str, Any]) -> None:
    decodes_or_is_malformed(canonical.dumps(value))
    decodes_or_is_malformed(canonical.dumps({**fields(), **value}))
