"""Adversarial tests of deterministic CBOR (core.canonical).

``loads`` must accept exactly the canonical (RFC 8949 §4.2) encodings of plain data — int within
the 64-bit major types, bool, None, str, bytes, list, str-keyed map — and turn everything else
into a RemoteProtocolError: so a signature over the bytes is a signature over one value.
"""

from __future__ import annotations

from typing import Any

import pytest
import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from sonet.core import canonical, limits
from sonet.core.canonical import dumps, loads, loads_map
from sonet.core.errors import RemoteProtocolError

H = bytes.fromhex


def same(a: Any, b: Any) -> bool:
    """Equality that also distinguishes True from 1 and list from tuple, recursively."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def rejected(data: Any, **kwargs: Any) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        loads(data, **kwargs)
    return info.value


def nested(depth: int, leaf: Any = 0) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


# Accepts ----------------------------------------------------------------------------------

# RFC 8949 Appendix A vectors that are canonical plain data.
RFC_VECTORS = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ("\"\\", "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, "a56161614161626142616361436164614461656145"),
]


@pytest.mark.parametrize(("value", "hexdata"), RFC_VECTORS, ids=[h for _, h in RFC_VECTORS])
def test_rfc8949_vectors(value: Any, hexdata: str) -> None:
    assert dumps(value) == H(hexdata)
    assert same(loads(H(hexdata)), value)


PLAIN_VALUES = [
    0,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    -24,
    -25,
    -256,
    -257,
    2**64 - 1,
    -(2**64),
    b"\x00" * 24,
    b"\xff" * 300,
    "é" * 100,
    [[], {}, [[]]],
    {"b": 1, "aa": 2, "a": 3, "": 4},
    {"k": {"k": {"k": None}}},
    nested(limits.MAX_DEPTH),
]


@pytest.mark.parametrize("value", PLAIN_VALUES, ids=[repr(v)[:30] for v in PLAIN_VALUES])
def test_plain_values_round_trip(value: Any) -> None:
    data = dumps(value)
    assert same(loads(data), value)
    assert dumps(loads(data)) == data


def test_map_keys_sorted_length_first_then_bytewise() -> None:
    # RFC 8949 §4.2.1 bytewise order of encoded keys: for text keys the length header sorts
    # shorter keys first.
    data = dumps({"aa": 1, "b": 2, "a": 3})
    assert data == H("a3") + H("616103") + H("616202") + H("62616101")
    assert loads(data) == {"a": 3, "b": 2, "aa": 1}


def test_type_of_result_is_preserved() -> None:
    assert loads(dumps(True)) is True
    assert loads(dumps(False)) is False
    assert loads(dumps(None)) is None
    assert type(loads(dumps(1))) is int
    assert type(loads(dumps([1]))) is list
    assert type(loads(dumps(b"x"))) is bytes


def test_loads_does_not_mutate_or_share_input() -> None:
    data = dumps({"a": [b"x"]})
    copy = bytes(data)
    loads(data)
    assert data == copy


# Rejects ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [dumps(1) + b"\x00", dumps([1]) + b"\xff", dumps({"a": 1}) + dumps({"a": 1}), b"\xf6\xf6", b"\x80\x00"],
    ids=["int+0", "list+break", "map+map", "null+null", "list+0"],
)
def test_trailing_bytes_rejected(data: bytes) -> None:
    rejected(data)


NON_MINIMAL = {
    "uint 1 in 1 extra byte": "1801",
    "uint 23 in 1 extra byte": "1817",
    "uint 255 in 2 bytes": "1900ff",
    "uint 1 in 4 bytes": "1a00000001",
    "uint 65535 in 4 bytes": "1a0000ffff",
    "uint 1 in 8 bytes": "1b0000000000000001",
    "uint 2**32-1 in 8 bytes": "1b00000000ffffffff",
    "nint -1 in 1 extra byte": "3800",
    "nint -1 in 8 bytes": "3b0000000000000000",
    "bytes len in 1 extra byte": "580100",
    "bytes len in 2 bytes": "59000100",
    "text len in 1 extra byte": "780161",
    "text len in 8 bytes": "7b000000000000000161",
    "array len in 1 extra byte": "980100",
    "array len in 4 bytes": "9a0000000100",
    "map len in 1 extra byte": "b801616100",
    "false as 2-byte simple": "f814",
    "null as 2-byte simple": "f816",
    "nested non-minimal": "8101" + "81" + "1801",
    "non-minimal map value": "a161611801",
}


@pytest.mark.parametrize("hexdata", list(NON_MINIMAL.values()), ids=list(NON_MINIMAL))
def test_non_minimal_heads_rejected(hexdata: str) -> None:
    rejected(H(hexdata))


@pytest.mark.parametrize(
    "hexdata",
    [
        "a2616201616102",  # {"b":1, "a":2}
        "a2626161016162" + "02",  # {"aa":1, "b":2}: longer key first
        "a3616101616302616202",  # {"a", "c", "b"}
        "a2616101616102",  # duplicate "a"
        "a2616101616101",  # duplicate "a", same value
        "a2600160" + "02",  # duplicate "" key
        "81a2616201616102",  # unsorted inside a list
        "a16178a2616201616102",  # unsorted inside a map
    ],
    ids=["b-a", "aa-b", "a-c-b", "dup", "dup-same-value", "dup-empty", "nested-in-list", "nested-in-map"],
)
def test_unsorted_or_duplicate_map_keys_rejected(hexdata: str) -> None:
    rejected(H(hexdata))


@pytest.mark.parametrize(
    "hexdata",
    ["9fff", "9f01ff", "9f018202039f0405ffff", "bf616101ff", "bfff", "5f42010243030405ff", "5fff", "7f657374726561646d696e67ff", "7fff", "ff", "81ff"],
    ids=["array-empty", "array", "array-nested", "map", "map-empty", "bytes", "bytes-empty", "text", "text-empty", "lone-break", "break-in-array"],
)
def test_indefinite_length_items_rejected(hexdata: str) -> None:
    rejected(H(hexdata))


TAGGED = {
    "self-describe 55799 int": "d9d9f7" + "01",
    "self-describe 55799 list": "d9d9f7" + "8101",
    "self-describe 55799 map": "d9d9f7" + "a0",
    "self-describe 55799 twice": "d9d9f7d9d9f7" + "01",
    "datetime string (0)": "c074323031332d30332d32315432303a30343a30305a",
    "epoch int (1)": "c11a514b67b0",
    "epoch float (1)": "c1fb41d452d9ec200000",
    "bignum 1 (2)": "c24101",
    "bignum empty (2)": "c240",
    "bignum 2**64 (2)": "c249010000000000000000",
    "bignum 2**70 canonical (2)": dumps(2**70).hex(),
    "negative bignum -2**64-1 (3)": "c349010000000000000000",
    "negative bignum canonical (3)": dumps(-(2**70)).hex(),
    "decimal fraction (4)": "c48221196ab3",
    "embedded cbor (24)": "d81841" + "01",
    "uri (32)": "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
    "base64url (33)": "d8216141",
    "uuid (37)": "d82550" + "00" * 16,
    "set (258)": "d901028101",
    "shared (28)": "d81c8101",
    "shared + ref (28, 29)": "82d81c8101d81d00",
    "cyclic shared ref (28, 29)": "d81c81d81d00",
    "lone ref (29)": "d81d00",
    "stringref namespace (256, 25)": "d901008263616263d81900",
    "unknown tag": "da0012d68701",
    "tag on a map value": "a16161c11a514b67b0",
    "tag in a list": "8101c24101",
    "tag 64-bit number": "dbffffffffffffffff01",
    "tag without content": "c2",
}


@pytest.mark.parametrize("hexdata", list(TAGGED.values()), ids=list(TAGGED))
def test_tags_rejected(hexdata: str) -> None:
    rejected(H(hexdata))


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**64) - 1, 2**70, [2**64], {"n": -(2**100)}],
    ids=["2**64", "-2**64-1", "2**70", "in-list", "in-map"],
)
def test_ints_beyond_64_bits_are_bignum_tags_and_rejected(value: Any) -> None:
    data = dumps(value)  # cbor2 emits tag 2/3 here: the one tag a canonical encoder produces
    assert b"\xc2" in data or b"\xc3" in data
    rejected(data)


@pytest.mark.parametrize(
    "hexdata",
    ["f93c00", "f97e00", "f97c00", "f98000", "fa47c35000", "fb3ff199999999999a", "8101f93c00", "a16161f93c00", "f90000"],
    ids=["half-1.0", "half-nan", "half-inf", "half-neg-zero", "single", "double", "in-list", "in-map", "half-zero"],
)
def test_floats_rejected(hexdata: str) -> None:
    rejected(H(hexdata))


def test_float_values_encoded_by_dumps_rejected() -> None:
    for value in (0.0, 1.5, float("nan"), float("inf"), -0.0, [1.0], {"x": 2.5}):
        rejected(dumps(value))


@pytest.mark.parametrize(
    "hexdata",
    ["a10100", "a1200a", "a1410100", "a1f400", "a1f600", "a1810100", "a1a00100", "a1f93c0000", "a2616100" + "0100"],
    ids=["uint", "nint", "bytes", "false", "null", "array", "map", "float", "str-then-int"],
)
def test_non_str_map_keys_rejected(hexdata: str) -> None:
    rejected(H(hexdata))


@pytest.mark.parametrize(
    "hexdata",
    ["f7", "e0", "f0", "f3", "f820", "f8ff", "8101f7", "a16161f7", "fc", "fd", "fe", "1c", "3c", "5c", "7c", "9c", "bc", "dc"],
    ids=["undefined", "simple-0", "simple-16", "simple-19", "simple-32", "simple-255", "undef-in-list", "undef-in-map",
         "reserved-fc", "reserved-fd", "reserved-fe", "ai28-uint", "ai28-nint", "ai28-bytes", "ai28-text", "ai28-array",
         "ai28-map", "ai28-tag"],
)
def test_undefined_simple_and_reserved_values_rejected(hexdata: str) -> None:
    rejected(H(hexdata))


@pytest.mark.parametrize(
    "hexdata",
    ["61ff", "62c080", "63eda080", "64f8888080", "62e282", "6180", "8161ff", "a161ff00"],
    ids=["ff", "overlong", "surrogate", "5-byte", "truncated-seq", "lone-continuation", "in-list", "as-key"],
)
def test_invalid_utf8_text_rejected(hexdata: str) -> None:
    rejected(H(hexdata))


def test_every_truncation_rejected() -> None:
    data = dumps({"a": [1, 2**40, b"bytes", "text", None, True], "bb": {"c": -(2**63)}})
    assert loads(data)
    for cut in range(len(data)):
        rejected(data[:cut])


@pytest.mark.parametrize(
    "hexdata",
    ["5b7fffffffffffffff", "7bffffffffffffffff", "9bffffffffffffffff", "bbffffffffffffffff", "9affffffff", "5affffffff"],
    ids=["bytes", "text", "array", "map", "array32", "bytes32"],
)
def test_huge_length_headers_rejected_without_allocating(hexdata: str) -> None:
    rejected(H(hexdata))


def test_size_cap() -> None:
    # A byte string whose total encoding is exactly at the cap is fine; one byte more is not.
    head = len(dumps(b"\x00" * limits.MAX_CBOR_BYTES)) - limits.MAX_CBOR_BYTES
    at_cap = dumps(b"\x00" * (limits.MAX_CBOR_BYTES - head))
    assert len(at_cap) == limits.MAX_CBOR_BYTES
    assert loads(at_cap) == b"\x00" * (limits.MAX_CBOR_BYTES - head)
    over = dumps(b"\x00" * (limits.MAX_CBOR_BYTES - head + 1))
    assert len(over) == limits.MAX_CBOR_BYTES + 1
    assert "exceeds" in str(rejected(over))


def test_size_cap_parameter() -> None:
    data = dumps("x" * 100)
    assert loads(data, max_bytes=len(data)) == "x" * 100
    rejected(data, max_bytes=len(data) - 1)
    rejected(dumps(0), max_bytes=0)


def test_depth_cap() -> None:
    assert loads(dumps(nested(limits.MAX_DEPTH))) == nested(limits.MAX_DEPTH)
    rejected(dumps(nested(limits.MAX_DEPTH + 1)))
    deep_map: Any = 0
    for _ in range(limits.MAX_DEPTH + 1):
        deep_map = {"k": deep_map}
    rejected(dumps(deep_map))
    assert loads(dumps(deep_map["k"])) == deep_map["k"]


@pytest.mark.parametrize("depth", [50, 500, 5_000, limits.MAX_CBOR_BYTES - 1])
def test_absurd_depth_is_a_protocol_error(depth: int) -> None:
    rejected(b"\x81" * depth + b"\x00")
    rejected(b"\xa1\x61k" * (depth // 3) + b"\x00")
    rejected(b"\xd8\x20" * (depth // 2) + b"\x00")  # tags nest too


@pytest.mark.parametrize("data", [b"", None, bytearray(b"\x00"), memoryview(b"\x00"), "\x00", 0, [0]])
def test_empty_or_non_bytes_input_rejected(data: Any) -> None:
    rejected(data)


def test_errors_are_remote_protocol_errors_with_a_code() -> None:
    err = rejected(b"\xf7")
    assert type(err) is RemoteProtocolError
    assert err.code == "bad_input"


# loads_map --------------------------------------------------------------------------------

SCHEMA = {"name": str, "n": int, "key": bytes, "ok": bool, "none": type(None), "list": list, "map": dict}
GOOD = {"name": "alice", "n": 3, "key": b"\x01" * 32, "ok": False, "none": None, "list": [1], "map": {"a": 1}}


def test_loads_map_accepts_exact_schema() -> None:
    value = loads_map(dumps(GOOD), SCHEMA)
    assert same(value, GOOD)


@pytest.mark.parametrize("missing", list(SCHEMA))
def test_loads_map_rejects_missing_key(missing: str) -> None:
    value = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(RemoteProtocolError):
        loads_map(dumps(value), SCHEMA)


@pytest.mark.parametrize("extra", ["extra", "", "Name", "n " ])
def test_loads_map_rejects_extra_key(extra: str) -> None:
    with pytest.raises(RemoteProtocolError):
        loads_map(dumps({**GOOD, extra: 0}), SCHEMA)


def test_loads_map_rejects_renamed_key() -> None:
    value = dict(GOOD)
    value["nam"] = value.pop("name")
    with pytest.raises(RemoteProtocolError):
        loads_map(dumps(value), SCHEMA)


WRONG_TYPES = [
    ("n", True),
    ("n", False),
    ("n", "3"),
    ("n", None),
    ("n", b"\x03"),
    ("ok", 0),
    ("ok", 1),
    ("ok", None),
    ("name", b"alice"),
    ("name", None),
    ("name", ["alice"]),
    ("key", "key"),
    ("key", [1, 2]),
    ("none", False),
    ("none", 0),
    ("none", b""),
    ("list", {}),
    ("list", b""),
    ("map", []),
    ("map", "a"),
]


@pytest.mark.parametrize(("key", "value"), WRONG_TYPES, ids=[f"{k}={v!r}" for k, v in WRONG_TYPES])
def test_loads_map_rejects_wrong_value_type(key: str, value: Any) -> None:
    with pytest.raises(RemoteProtocolError, match=repr(key)):
        loads_map(dumps({**GOOD, key: value}), SCHEMA)


@pytest.mark.parametrize("value", [[], [GOOD], "map", 1, None, b"", {}], ids=["list", "list-of-map", "str", "int", "null", "bytes", "empty-map"])
def test_loads_map_rejects_non_map_or_empty(value: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        loads_map(dumps(value), SCHEMA)


def test_loads_map_applies_every_loads_check() -> None:
    data = dumps(GOOD)
    with pytest.raises(RemoteProtocolError):
        loads_map(data + b"\x00", SCHEMA)
    with pytest.raises(RemoteProtocolError):
        loads_map(data, SCHEMA, max_bytes=len(data) - 1)
    with pytest.raises(RemoteProtocolError):
        loads_map(H("d9d9f7") + data, SCHEMA)
    small = {"n": 1, "name": "x"}
    unsorted = H("a2") + dumps("name") + dumps("x") + dumps("n") + dumps(1)
    assert unsorted != dumps(small)
    with pytest.raises(RemoteProtocolError):
        loads_map(unsorted, {"n": int, "name": str})
    assert loads_map(dumps(small), {"n": int, "name": str}) == small


def test_loads_map_with_empty_schema() -> None:
    assert loads_map(dumps({}), {}) == {}
    with pytest.raises(RemoteProtocolError):
        loads_map(dumps({"a": 1}), {})


# Hypothesis -------------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=None)

_plain_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.text(max_size=30)
    | st.binary(max_size=30)
)
plain_values = st.recursive(
    _plain_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=5),
    max_leaves=25,
)


def depth(value: Any) -> int:
    if type(value) is list:
        return 1 + max((depth(v) for v in value), default=0)
    if type(value) is dict:
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def loads_or_reject(data: bytes) -> Any:
    """loads returns a value whose canonical encoding is exactly ``data``, or rejects."""
    try:
        value = loads(data)
    except RemoteProtocolError as exc:
        assert exc.code == "bad_input"
        return None
    assert dumps(value) == data
    assert depth(value) <= limits.MAX_DEPTH
    return value


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_load_or_reject(data: bytes) -> None:
    loads_or_reject(data)


@FUZZ
@given(st.sampled_from([b"\x81", b"\x82\x00", b"\xa1\x61a", b"\xd9\xd9\xf7", b"\x9f", b"\xc2", b""]), st.binary(max_size=64))
def test_arbitrary_bytes_behind_a_plausible_prefix_load_or_reject(prefix: bytes, body: bytes) -> None:
    loads_or_reject(prefix + body)


@FUZZ
@given(plain_values)
def test_plain_values_round_trip_or_exceed_depth(value: Any) -> None:
    data = dumps(value)
    if depth(value) <= limits.MAX_DEPTH:
        assert same(loads(data), value)
    else:
        rejected(data)


@FUZZ
@given(plain_values, st.data())
def test_one_mutated_byte_loads_or_rejects(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(dumps(value))
    index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[index] = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != encoded[index]))
    loads_or_reject(bytes(encoded))


@FUZZ
@given(plain_values, st.binary(min_size=1, max_size=8))
def test_appended_bytes_always_rejected(value: Any, extra: bytes) -> None:
    rejected(dumps(value) + extra)


# The fast check of loads against the reference definition ----------------------------------


def reference_loads(data: bytes) -> Any:
    """What loads must accept, by definition: cbor2's strict decode, plain types only, and the
    input equal to cbor2's canonical encoding of the result (the check loads did before it
    compared key order itself; see the module docstring)."""

    def plain(value: Any, level: int) -> bool:
        if level > limits.MAX_DEPTH:
            return False
        if type(value) is int:
            return -(2**64) <= value <= 2**64 - 1
        if type(value) in (bool, str, bytes, type(None)):
            return True
        if type(value) is list:
            return all(plain(v, level + 1) for v in value)
        if type(value) is dict:
            return all(type(k) is str and plain(v, level + 1) for k, v in value.items())
        return False

    try:
        value = cbor2.loads(data, max_depth=limits.MAX_DEPTH + 1, allow_indefinite=False, allow_duplicate_keys=False, semantic_decoders={})
    except Exception:
        return REFUSED
    if not plain(value, 0) or cbor2.dumps(value, canonical=True) != data:
        return REFUSED
    return value


REFUSED = object()


def agrees_with_reference(data: bytes) -> None:
    expected = reference_loads(data)
    if expected is REFUSED:
        rejected(data)
    else:
        assert same(loads(data), expected)


# maps in any key order, encoded as they are (cbor2's default encoding keeps insertion order)
unordered_values = st.recursive(
    _plain_scalars,
    lambda children: st.lists(children, max_size=5)
    | st.lists(st.tuples(st.text(max_size=4), children), max_size=5).map(dict)
    | st.lists(st.tuples(st.text(max_size=4), children), max_size=5).map(lambda items: dict(reversed(items))),
    max_leaves=25,
)


@FUZZ
@given(unordered_values)
def test_loads_agrees_with_the_reference_on_maps_in_any_order(value: Any) -> None:
    agrees_with_reference(cbor2.dumps(value))
    agrees_with_reference(dumps(value))


@FUZZ
@given(unordered_values, st.data())
def test_loads_agrees_with_the_reference_on_mutated_encodings(value: Any, data: st.DataObject) -> None:
    encoded = bytearray(cbor2.dumps(value))
    index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[index] = data.draw(st.integers(min_value=0, max_value=255))
    agrees_with_reference(bytes(encoded))


@FUZZ
@given(st.binary(max_size=256))
def test_loads_agrees_with_the_reference_on_arbitrary_bytes(data: bytes) -> None:
    agrees_with_reference(data)


@pytest.mark.parametrize(
    "keys",
    [["b", "a"], ["aa", "b"], ["é", "zz"], ["", "a", "b", "ab", "aa"], ["a", "b", "aa", "\x7f", "é"]],
    ids=["b-a", "aa-b", "multibyte-before-ascii", "late-swap", "utf8-length"],
)
def test_key_order_is_utf8_length_then_bytes(keys: list[str]) -> None:
    as_built = cbor2.dumps(dict.fromkeys(keys, 0))
    if as_built == dumps(dict.fromkeys(keys, 0)):
        assert list(loads(as_built)) == keys
    else:
        rejected(as_built)
    agrees_with_reference(as_built)


def test_an_unordered_map_beside_a_forbidden_type_is_refused_for_the_type() -> None:
    data = H("82") + H("a2616201616102") + H("f93c00")  # [{"b":1, "a":2}, 1.0]
    assert "type" in str(rejected(data))
    assert "canonical" in str(rejected(H("82") + H("a2616201616102") + H("01")))


@FUZZ
@given(plain_values)
def test_dumps_ordered_is_dumps_for_maps_in_canonical_order(value: Any) -> None:
    ordered = loads(dumps(value)) if depth(value) <= limits.MAX_DEPTH else None
    if ordered is not None:
        assert canonical.dumps_ordered(ordered) == dumps(value)


def test_module_exports() -> None:
    assert set(canonical.__all__) == {"dumps", "dumps_ordered", "loads", "loads_map"}
