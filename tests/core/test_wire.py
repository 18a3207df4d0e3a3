"""Adversarial tests of the msgpack frame codec (core.wire).

The contract under test: ``decode_frame`` turns any byte string into a typed, checked Frame or a
RemoteProtocolError, never anything else, and every cap of ``core.limits`` is enforced;
``encode_frame`` raises LocalProtocolError rather than produce bytes the peer must reject.
"""

from __future__ import annotations

import typing
from typing import Any, Optional

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonet.core import limits
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.wire import (
    Frame,
    Struct,
    decode_frame,
    decode_stored,
    decode_struct,
    encode_frame,
    encode_struct,
    frame,
    registered_frames,
    struct,
    unpackb,
)

# Test-only frames (tags >= 1000 so they cannot clash with production frames) ----------------


@struct
class Item(Struct):
    id: int
    label: str

    def check(self) -> None:
        if self.id < 0:
            raise ValueError("id must be non-negative")


@frame(tag=1000)
class Sample(Frame):
    n: int
    flag: bool
    name: str
    blob: bytes
    note: str | None
    maybe: Optional[bytes]  # noqa: UP007 - typing.Optional is a supported spelling too
    items: tuple[Item, ...]
    child: Item | None
    nums: tuple[int, ...]

    def check(self) -> None:
        if self.n < 0:
            raise ValueError("n must be non-negative")
        if len(self.items) > 8:
            raise ValueError("too many items")


@frame(tag=1001)
class Empty(Frame):
    pass


@frame(tag=1002)
class Chunks(Frame):
    parts: tuple[bytes, ...]


TEST_TAGS = (Sample.TAG, Empty.TAG, Chunks.TAG)
SAMPLE_FIELDS = ("n", "flag", "name", "blob", "note", "maybe", "items", "child", "nums")


def sample(**overrides: Any) -> Sample:
    values: dict[str, Any] = dict(
        n=7,
        flag=True,
        name="alice",
        blob=b"\x00\x01\xff",
        note=None,
        maybe=b"m",
        items=(Item(id=1, label="one"), Item(id=2, label="two")),
        child=Item(id=3, label="three"),
        nums=(0, -1, 2**63 - 1, -(2**63), 2**64 - 1),
    )
    values.update(overrides)
    return Sample(**values)


def sample_wire() -> list[Any]:
    """The wire form (before msgpack) of ``sample()``, to be corrupted field by field."""
    return [
        1000,
        7,
        True,
        "alice",
        b"\x00\x01\xff",
        None,
        b"m",
        [[1, "one"], [2, "two"]],
        [3, "three"],
        [0, -1, 2**63 - 1, -(2**63), 2**64 - 1],
    ]


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def with_field(name: str, value: Any) -> bytes:
    wire = sample_wire()
    wire[1 + SAMPLE_FIELDS.index(name)] = value
    return pack(wire)


def replace_name(encoded_value: bytes) -> bytes:
    """An encoded Sample whose ``name`` field is replaced by raw msgpack bytes."""
    wire = pack(sample_wire())
    good = pack("alice")
    assert wire.count(good) == 1
    return wire.replace(good, encoded_value)


def assert_rejected(data: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode_frame(data)
    assert info.type is RemoteProtocolError
    return info.value


# Registry and round trip ------------------------------------------------------------------


def test_test_frames_are_registered() -> None:
    frames = registered_frames()
    assert frames[1000] is Sample
    assert frames[1001] is Empty
    assert frames[1002] is Chunks
    frames.clear()  # a copy: clearing it must not unregister anything
    assert registered_frames()[1000] is Sample


def test_registering_a_tag_twice_fails() -> None:
    with pytest.raises(RuntimeError, match="1000"):

        @frame(tag=1000)
        class Again(Frame):
            x: int

    assert registered_frames()[1000] is Sample


@pytest.mark.parametrize("tp", ["float", "dict[str, int]", "list[int]", "tuple[int, str]", "int | str"])
def test_unsupported_field_types_fail_at_definition(tp: str) -> None:
    ns: dict[str, Any] = {}
    exec(f"class Bad(Struct):\n    x: {tp}\n", {"Struct": Struct}, ns)
    with pytest.raises(TypeError, match="unsupported wire field type"):
        struct(ns["Bad"])


def test_round_trip_full() -> None:
    obj = sample()
    data = encode_frame(obj)
    assert msgpack.unpackb(data, raw=False)[0] == 1000
    back = decode_frame(data)
    assert type(back) is Sample
    assert back == obj
    assert type(back.items) is tuple and type(back.nums) is tuple
    assert all(type(i) is Item for i in back.items)
    assert type(back.flag) is bool
    assert encode_frame(back) == data


def test_round_trip_optional_variants_and_empty_containers() -> None:
    obj = sample(note="a note", maybe=None, items=(), child=None, nums=(), name="", blob=b"", flag=False, n=0)
    back = decode_frame(encode_frame(obj))
    assert back == obj
    assert back.maybe is None and back.child is None and back.note == "a note"


def test_round_trip_empty_frame() -> None:
    data = encode_frame(Empty())
    assert data == pack([1001])
    assert decode_frame(data) == Empty()


def test_decoder_accepts_non_minimal_msgpack_encodings() -> None:
    # msgpack is not canonical; the frame codec only cares about the decoded value.
    assert decode_frame(b"\x91\xcf" + (1001).to_bytes(8, "big")) == Empty()
    long_header = b"\xdc\x00\x02" + b"\xcf" + (1002).to_bytes(8, "big") + b"\xdd\x00\x00\x00\x01" + b"\xc6\x00\x00\x00\x01z"
    assert decode_frame(long_header) == Chunks(parts=(b"z",))


# Strict types -----------------------------------------------------------------------------

BAD_FIELDS = [
    ("n", True, "bool where int"),
    ("n", False, "bool where int"),
    ("n", 7.0, "float where int"),
    ("n", "7", "str where int"),
    ("n", None, "nil where int"),
    ("n", [7], "array where int"),
    ("flag", 1, "int where bool"),
    ("flag", 0, "int where bool"),
    ("flag", None, "nil where bool"),
    ("flag", "true", "str where bool"),
    ("name", b"alice", "bytes where str"),
    ("name", None, "nil where str"),
    ("name", ["a"], "array where str"),
    ("blob", "blob", "str where bytes"),
    ("blob", None, "nil where bytes"),
    ("blob", [0, 1], "array where bytes"),
    ("note", b"note", "bytes where Optional[str]"),
    ("note", 1, "int where Optional[str]"),
    ("maybe", "m", "str where Optional[bytes]"),
    ("maybe", False, "bool where Optional[bytes]"),
    ("items", None, "nil where tuple"),
    ("items", {}, "map where tuple"),
    ("items", {"0": [1, "one"]}, "map where tuple"),
    ("items", "items", "str where tuple"),
    ("items", b"\x91\x01", "bytes where tuple"),
    ("items", [[1]], "struct missing a field"),
    ("items", [[1, "one", 2]], "struct with an extra field"),
    ("items", [[]], "empty struct"),
    ("items", [["1", "one"]], "struct field of wrong type"),
    ("items", [[True, "one"]], "bool in a struct int field"),
    ("items", [{"id": 1, "label": "one"}], "map where struct"),
    ("items", [None], "nil where struct"),
    ("items", [1, "one"], "struct flattened into the tuple"),
    ("child", [3], "optional struct missing a field"),
    ("child", {"id": 3, "label": "x"}, "map where optional struct"),
    ("child", 3, "int where optional struct"),
    ("child", [[3, "three"]], "array of struct where struct"),
    ("nums", [1, True], "bool inside tuple[int]"),
    ("nums", [1, 2.0], "float inside tuple[int]"),
    ("nums", [1, None], "nil inside tuple[int]"),
    ("nums", [[1]], "array inside tuple[int]"),
    ("nums", 1, "int where tuple[int]"),
]


@pytest.mark.parametrize(("field", "value", "why"), BAD_FIELDS, ids=[f"{f}:{w}" for f, _, w in BAD_FIELDS])
def test_wrong_field_type_is_rejected(field: str, value: Any, why: str) -> None:
    err = assert_rejected(with_field(field, value))
    assert err.code == "bad_input"


def test_the_corruption_helpers_build_valid_frames() -> None:
    # Guard for the tables here: the unmodified wire form decodes, so each rejection is caused
    # by the one corrupted field.
    assert decode_frame(pack(sample_wire())) == sample()
    assert decode_frame(with_field("n", 8)) == sample(n=8)
    assert decode_frame(replace_name(pack("bob"))) == sample(name="bob")


def test_missing_and_extra_fields_are_rejected() -> None:
    wire = sample_wire()
    assert_rejected(pack(wire[:-1]))
    assert_rejected(pack(wire[:1]))
    assert_rejected(pack([*wire, None]))
    assert_rejected(pack([*wire, 0]))
    assert_rejected(pack([1001, None]))  # Empty takes no fields
    assert_rejected(pack([1002]))  # Chunks needs one


@pytest.mark.parametrize(
    "tag",
    [True, False, 1000.0, "1000", b"1000", None, [1000], {"tag": 1000}],
    ids=["true", "false", "float", "str", "bytes", "nil", "array", "map"],
)
def test_tag_must_be_an_int(tag: Any) -> None:
    assert_rejected(pack([tag, *sample_wire()[1:]]))


@pytest.mark.parametrize("tag", [0, 999, 1003, 2**32, 2**64 - 1, -1, -(2**63)])
def test_unknown_tag_is_rejected(tag: int) -> None:
    if tag in registered_frames():  # a production frame may own a small tag
        pytest.skip("tag is registered")
    err = assert_rejected(pack([tag]))
    assert "unknown frame tag" in str(err)


def test_bool_true_is_not_tag_one() -> None:
    # If a production frame has tag 1, True must not alias to it (True == 1 in Python).
    assert_rejected(pack([True]))
    assert_rejected(pack([False]))


@pytest.mark.parametrize(
    "value",
    [[], None, 1000, "x", b"\x90", {}, {"1000": 1}, 1.5, True],
    ids=["empty-array", "nil", "int", "str", "bin", "empty-map", "map", "float", "bool"],
)
def test_top_level_must_be_a_non_empty_array(value: Any) -> None:
    assert_rejected(pack(value))


@pytest.mark.parametrize(
    "data", [bytearray(pack([1001])), memoryview(pack([1001])), "\x91\xcd\x03\xe9", None, [1001]]
)
def test_non_bytes_input_is_rejected(data: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_frame(data)


# Caps -------------------------------------------------------------------------------------


def test_frame_byte_cap() -> None:
    part = b"\x00" * (limits.MAX_FRAME_BYTES // 4)  # within the bin cap
    n = 4
    under = pack([1002, [part] * (n - 1)])
    assert len(under) < limits.MAX_FRAME_BYTES
    assert len(decode_frame(under).parts) == n - 1
    over = pack([1002, [part] * n])  # each part is within the bin cap; the whole is not
    assert len(over) > limits.MAX_FRAME_BYTES
    err = assert_rejected(over)
    assert "cap" in str(err)
    # Rejected from the length alone, even if the content is garbage.
    assert_rejected(b"\xc1" * (limits.MAX_FRAME_BYTES + 1))


def test_str_cap_counts_utf8_bytes() -> None:
    assert decode_frame(with_field("name", "a" * limits.MAX_STR_LEN)).name == "a" * limits.MAX_STR_LEN
    assert_rejected(with_field("name", "a" * (limits.MAX_STR_LEN + 1)))
    # Two UTF-8 bytes per character: half as many characters hit the same cap.
    assert_rejected(with_field("name", "é" * (limits.MAX_STR_LEN // 2 + 1)))
    assert decode_frame(with_field("name", "é" * (limits.MAX_STR_LEN // 2))).name.startswith("é")


def test_bin_cap() -> None:
    ok = b"\x07" * limits.MAX_BIN_LEN
    assert decode_frame(with_field("blob", ok)).blob == ok
    assert_rejected(with_field("blob", ok + b"\x07"))


def test_array_cap() -> None:
    ok = list(range(limits.MAX_ARRAY_LEN))
    assert decode_frame(with_field("nums", ok)).nums == tuple(ok)
    assert_rejected(with_field("nums", [*ok, 0]))
    # A header that claims a huge array, with no body, must not allocate or hang.
    assert_rejected(bytes([0x92, 0xCD, 0x03, 0xEA, 0xDD, 0xFF, 0xFF, 0xFF, 0xFF]))


def test_map_cap() -> None:
    ok = {f"k{i}": i for i in range(limits.MAX_MAP_LEN)}
    assert unpackb(pack(ok)) == ok
    over = {f"k{i}": i for i in range(limits.MAX_MAP_LEN + 1)}
    with pytest.raises(RemoteProtocolError):
        unpackb(pack(over))
    assert_rejected(pack([1000, over]))
    # frames have no map fields: any map where a field is expected is refused
    assert_rejected(with_field("name", {"a": "b"}))
    assert_rejected(bytes([0x91, 0xDF, 0xFF, 0xFF, 0xFF, 0xFF]))


def nested(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def test_depth_cap() -> None:
    assert unpackb(pack(nested(limits.MAX_DEPTH))) == nested(limits.MAX_DEPTH)
    with pytest.raises(RemoteProtocolError, match="nesting"):
        unpackb(pack(nested(limits.MAX_DEPTH + 1)))
    deep_map: Any = None
    for _ in range(limits.MAX_DEPTH + 1):
        deep_map = {"k": deep_map}
    with pytest.raises(RemoteProtocolError):
        unpackb(pack(deep_map))
    # As a frame: the tag array is depth 0, so a field may nest MAX_DEPTH - 1 further arrays.
    assert_rejected(with_field("nums", nested(limits.MAX_DEPTH, 1)))
    assert_rejected(pack([1002, nested(limits.MAX_DEPTH, b"x")]))


@pytest.mark.parametrize("depth", [100, 1_000, 5_000, limits.MAX_FRAME_BYTES - 1])
def test_absurd_depth_is_a_protocol_error(depth: int) -> None:
    # Far past msgpack's own stack and Python's recursion limit: still a clean rejection.
    assert_rejected(b"\x91" * depth + b"\xc0")
    assert_rejected(b"\x81\xa1k" * min(depth, limits.MAX_FRAME_BYTES // 3 - 1) + b"\xc0")


EXT_ENCODINGS = {
    "timestamp32": bytes([0xD6, 0xFF]) + b"\x00\x00\x00\x00",
    "timestamp64": bytes([0xD7, 0xFF]) + b"\x00" * 8,
    "timestamp96": bytes([0xC7, 12, 0xFF]) + b"\x00" * 12,
    "timestamp-bad-length": bytes([0xD4, 0xFF, 0x00]),
    "timestamp-empty": bytes([0xC7, 0x00, 0xFF]),
    "fixext1": bytes([0xD4, 0x05, 0x00]),
    "fixext2": bytes([0xD5, 0x05]) + b"\x00" * 2,
    "fixext4": bytes([0xD6, 0x05]) + b"\x00" * 4,
    "fixext8": bytes([0xD7, 0x05]) + b"\x00" * 8,
    "fixext16": bytes([0xD8, 0x05]) + b"\x00" * 16,
    "ext8-empty": bytes([0xC7, 0x00, 0x05]),
    "ext8": bytes([0xC7, 0x03, 0x05]) + b"abc",
    "ext16": bytes([0xC8, 0x00, 0x03, 0x7F]) + b"abc",
    "ext32": bytes([0xC9, 0x00, 0x00, 0x00, 0x03, 0x80]) + b"abc",
    "ext32-huge-length": bytes([0xC9, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    "ext-packed-by-msgpack": pack(msgpack.ExtType(42, b"payload")),
    "timestamp-packed-by-msgpack": pack(msgpack.Timestamp(1_700_000_000, 5)),
}


@pytest.mark.parametrize("ext", list(EXT_ENCODINGS.values()), ids=list(EXT_ENCODINGS))
def test_ext_types_are_refused(ext: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        unpackb(ext)
    # top level, as the tag, inside a tuple field, in place of a str field
    assert_rejected(ext)
    assert_rejected(bytes([0x91]) + ext)
    assert_rejected(bytes([0x92, 0xCD, 0x03, 0xEA, 0x91]) + ext)
    assert_rejected(replace_name(ext))


@pytest.mark.parametrize(
    "raw",
    [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"a\xfe", b"\xe2\x82"],
    ids=["ff", "overlong-nul", "surrogate", "5-byte", "fe", "truncated-seq"],
)
def test_non_utf8_str_is_rejected(raw: bytes) -> None:
    bad = bytes([0xA0 | len(raw)]) + raw
    with pytest.raises(RemoteProtocolError):
        unpackb(bad)
    assert_rejected(bad)
    assert_rejected(replace_name(bad))
    assert_rejected(pack([1002, ["ok"]])[:-3] + bad)  # in a tuple[bytes] position


@pytest.mark.parametrize(
    "key",
    [b"\x01", b"\xc0", b"\xc3", b"\xc4\x01k", b"\x91\x01", b"\x80", b"\xcb" + b"\x00" * 8],
    ids=["int", "nil", "bool", "bin", "array", "map", "float"],
)
def test_non_str_map_keys_are_rejected(key: bytes) -> None:
    one_entry = b"\x81" + key + b"\x01"
    assert_rejected(one_entry)
    assert_rejected(bytes([0x92, 0xCD, 0x03, 0xEA]) + one_entry)
    assert_rejected(replace_name(one_entry))
    if key[0] != 0xC4:  # msgpack's strict_map_key admits str and bin keys; frames have no maps at all
        with pytest.raises(RemoteProtocolError):
            unpackb(one_entry)


@pytest.mark.parametrize("suffix", [b"\x00", b"\xc0", b"\x90", b"\xc1", None])
def test_trailing_bytes_are_rejected(suffix: bytes | None) -> None:
    data = encode_frame(sample())
    assert_rejected(data + (data if suffix is None else suffix))
    assert_rejected(encode_frame(Empty()) + (b"\x00" if suffix is None else suffix))


def test_every_truncation_is_rejected() -> None:
    data = encode_frame(sample(note="n", nums=tuple(range(-40, 300, 7))))
    for cut in range(len(data)):
        assert_rejected(data[:cut])


def test_reserved_byte_c1_is_rejected() -> None:
    assert_rejected(b"\xc1")
    assert_rejected(bytes([0x92, 0xCD, 0x03, 0xE9, 0xC1]))


def test_ints_outside_64_bits_cannot_appear() -> None:
    # msgpack has no encoding for them; the nearest thing, a uint64 in the tag, is just unknown.
    assert_rejected(b"\x91\xcf" + b"\xff" * 8)
    assert decode_frame(with_field("nums", [2**64 - 1, -(2**63)])).nums == (2**64 - 1, -(2**63))


# check() ----------------------------------------------------------------------------------


def test_check_failure_on_decode_is_remote_error() -> None:
    err = assert_rejected(with_field("n", -1))
    assert "non-negative" in str(err)
    assert_rejected(with_field("items", [[1, "a"]] * 9))
    assert decode_frame(with_field("items", [[1, "a"]] * 8)).items == (Item(id=1, label="a"),) * 8


def test_nested_check_failure_on_decode_is_remote_error() -> None:
    assert "id must be non-negative" in str(assert_rejected(with_field("items", [[1, "a"], [-5, "b"]])))
    assert_rejected(with_field("child", [-1, "c"]))


def test_check_failure_on_encode_is_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="non-negative"):
        encode_frame(sample(n=-1))
    with pytest.raises(LocalProtocolError):
        encode_frame(sample(items=(Item(id=0, label=""),) * 9))


@pytest.mark.parametrize(
    "overrides",
    [
        {"items": (Item(id=-1, label="x"),)},
        {"child": Item(id=-2, label="y")},
    ],
    ids=["in-tuple", "optional-child"],
)
def test_nested_check_failure_on_encode_is_local_error(overrides: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError, match="id must be non-negative"):
        encode_frame(sample(**overrides))


# Encoding misuse --------------------------------------------------------------------------


class NotAFrame:
    TAG = 1000


@struct
class Unregistered(Frame):
    x: int


class SampleSubclass(Sample):
    pass


@pytest.mark.parametrize(
    "obj",
    [
        None,
        42,
        b"\x91\x00",
        [1000],
        NotAFrame(),
        Item(id=1, label="struct, not frame"),
        Unregistered(x=1),
    ],
    ids=["none", "int", "bytes", "list", "duck-typed", "struct", "unregistered-frame"],
)
def test_encoding_an_unregistered_object_is_local_error(obj: Any) -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(obj)


def test_encoding_a_subclass_of_a_registered_frame_is_local_error() -> None:
    obj = SampleSubclass(**{name: getattr(sample(), name) for name in SAMPLE_FIELDS})
    with pytest.raises(LocalProtocolError):
        encode_frame(obj)


BAD_VALUES = [
    ("n", "7", "str where int"),
    ("n", True, "bool where int"),
    ("n", 7.0, "float where int"),
    ("n", 2**64, "int above uint64"),
    ("nums", (-(2**63) - 1,), "int below int64"),
    ("flag", 1, "int where bool"),
    ("name", b"alice", "bytes where str"),
    ("name", "\ud800", "lone surrogate"),
    ("name", "a" * (limits.MAX_STR_LEN + 1), "str over cap"),
    ("blob", "blob", "str where bytes"),
    ("blob", b"\x00" * (limits.MAX_BIN_LEN + 1), "bytes over cap"),
    ("nums", tuple(range(limits.MAX_ARRAY_LEN + 1)), "array over cap"),
    ("nums", (1, {2}), "set inside tuple"),
    ("nums", (object(),), "object inside tuple"),
    ("note", {"a": 1}, "dict where Optional[str]"),
    ("items", (sample(),), "frame where struct"),
]


@pytest.mark.parametrize(("field", "value", "why"), BAD_VALUES, ids=[f"{f}:{w}" for f, _, w in BAD_VALUES])
def test_encoding_values_the_peer_would_reject_is_local_error(field: str, value: Any, why: str) -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(sample(**{field: value}))


def test_encoding_over_the_frame_cap_is_local_error() -> None:
    part = b"\x00" * (limits.MAX_FRAME_BYTES // 4)  # within the bin cap
    n = 4
    assert len(encode_frame(Chunks(parts=(part,) * (n - 1)))) < limits.MAX_FRAME_BYTES
    with pytest.raises(LocalProtocolError, match="MAX_FRAME_BYTES"):
        encode_frame(Chunks(parts=(part,) * n))


# Hypothesis -------------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_reject(data: bytes) -> Frame | None:
    """decode_frame must return a Frame or raise RemoteProtocolError; nothing else may escape.

    A frame that does decode must be a registered type and survive a re-encode unchanged.
    """
    try:
        result = decode_frame(data)
    except RemoteProtocolError as exc:
        assert isinstance(exc.code, str) and exc.code
        return None
    assert isinstance(result, Frame)
    assert registered_frames()[result.TAG] is type(result)
    assert decode_frame(encode_frame(result)) == result
    return result


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_decode_or_reject(data: bytes) -> None:
    decode_or_reject(data)


@FUZZ
@given(st.sampled_from(TEST_TAGS), st.binary(max_size=512))
def test_arbitrary_fields_after_a_valid_tag_decode_or_reject(tag: int, body: bytes) -> None:
    # Starts like a real frame so that the random part reaches the field checkers.
    for n_fields in (1, 9):
        decode_or_reject(bytes([0x90 | (n_fields + 1)]) + pack(tag) + body)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
_keys = st.text(max_size=8) | st.binary(max_size=4) | st.integers(-5, 5)
msgpack_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=20,
)
# Shallow values for field positions: what a confused or hostile peer would plausibly send.
field_values = _scalars | st.lists(_scalars, max_size=4) | st.lists(st.lists(_scalars, max_size=3), max_size=3)


@FUZZ
@given(msgpack_values)
def test_arbitrary_msgpack_values_decode_or_reject(value: Any) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    decode_or_reject(data)
    try:
        unpackb(data)
    except RemoteProtocolError:
        pass


@FUZZ
@given(st.sampled_from(TEST_TAGS), st.lists(field_values, max_size=10))
def test_arbitrary_msgpack_fields_under_a_valid_tag_decode_or_reject(tag: int, fields: list[Any]) -> None:
    decode_or_reject(msgpack.packb([tag, *fields], use_bin_type=True))


_int64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_text = st.text(max_size=60)
_items = st.builds(Item, id=st.integers(min_value=0, max_value=2**64 - 1), label=_text)
samples = st.builds(
    Sample,
    n=st.integers(min_value=0, max_value=2**64 - 1),
    flag=st.booleans(),
    name=_text,
    blob=st.binary(max_size=100),
    note=st.none() | _text,
    maybe=st.none() | st.binary(max_size=20),
    items=st.lists(_items, max_size=8).map(tuple),
    child=st.none() | _items,
    nums=st.lists(_int64, max_size=50).map(tuple),
)
valid_frames = samples | st.just(Empty()) | st.builds(Chunks, parts=st.lists(st.binary(max_size=50), max_size=8).map(tuple))


@FUZZ
@given(valid_frames)
def test_valid_frames_round_trip(obj: Frame) -> None:
    data = encode_frame(obj)
    back = decode_frame(data)
    assert type(back) is type(obj)
    assert back == obj
    assert encode_frame(back) == data


@FUZZ
@given(valid_frames, st.data())
def test_one_mutated_byte_decodes_or_rejects(obj: Frame, data: st.DataObject) -> None:
    encoded = bytearray(encode_frame(obj))
    index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    byte = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != encoded[index]))
    encoded[index] = byte
    decode_or_reject(bytes(encoded))


@FUZZ
@given(valid_frames, st.data())
def test_truncated_or_extended_frames_are_rejected(obj: Frame, data: st.DataObject) -> None:
    encoded = encode_frame(obj)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    assert_rejected(encoded[:cut])
    extra = data.draw(st.binary(min_size=1, max_size=16))
    assert_rejected(encoded + extra)


def test_typing_hints_of_test_frames_are_resolvable() -> None:
    # Guard: the decorators compile against real type hints (not strings left unresolved).
    hints = typing.get_type_hints(Sample)
    assert hints["maybe"] == Optional[bytes]  # noqa: UP007
    assert [name for name, _ in Sample._wire_fields] == list(SAMPLE_FIELDS)


# Standalone structs (encode_struct / decode_struct) ----------------------------------------


def test_struct_round_trip() -> None:
    item = Item(id=7, label="seven")
    assert decode_struct(Item, encode_struct(item)) == item


@pytest.mark.parametrize(
    "data, why",
    [
        (msgpack.packb([-1, "x"]), "check() fails"),
        (msgpack.packb([1]), "missing field"),
        (msgpack.packb([1, "x", 2]), "extra field"),
        (msgpack.packb([1, b"x"]), "wrong type"),
        (msgpack.packb({"id": 1}), "not an array"),
        (msgpack.packb([1, "x"])[:-1], "truncated"),
        (b"\xc1", "reserved byte"),
    ],
)
def test_malformed_struct_is_a_remote_error(data: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError, match="Item|msgpack"):
        decode_struct(Item, data)


def test_struct_over_the_cap_is_rejected() -> None:
    with pytest.raises(RemoteProtocolError, match="cap"):
        decode_struct(Item, b"\x00" * (limits.MAX_FRAME_BYTES + 1))


def test_encode_struct_refuses_invalid_values_and_non_structs() -> None:
    with pytest.raises(LocalProtocolError, match="invalid Item"):
        encode_struct(Item(id=-1, label="x"))
    with pytest.raises(LocalProtocolError, match="not a wire struct"):
        encode_struct(Empty())  # type: ignore[arg-type] - a frame is not a struct
    with pytest.raises(LocalProtocolError, match="not a wire struct"):
        encode_struct("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data, why",
    [
        (msgpack.packb([1]), "missing field"),
        (msgpack.packb([1, "x", 2]), "extra field"),
        (msgpack.packb([1, b"x"]), "wrong type"),
        (msgpack.packb([1, "x"])[:-1], "truncated"),
        (b"\xc1", "reserved byte"),
        (b"\x00" * (limits.MAX_FRAME_BYTES + 1), "over the cap"),
        (msgpack.packb([1, "x" * (limits.MAX_STR_LEN + 1)]), "str over its cap"),
    ],
)
def test_decode_stored_keeps_types_and_caps(data: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError, match="Item|msgpack|cap"):
        decode_stored(Item, data)


def test_decode_stored_reads_back_without_running_check_again() -> None:
    assert decode_stored(Item, encode_struct(Item(id=7, label="seven"))) == Item(id=7, label="seven")
    # what only check() refuses is not looked at again (it passed when the bytes were made)
    assert decode_stored(Item, msgpack.packb([-1, "x"])) == Item(id=-1, label="x")
    with pytest.raises(TypeError):
        decode_stored(Sample, msgpack.packb([]))


def test_nested_checked_encoding_skips_only_the_nested_checks() -> None:
    # nested structs that passed their check()s when taken in (a mailbox's envelopes): their
    # check() is not run again; the frame's own check(), every type and every cap are
    unchecked = sample(items=(Item(id=-1, label="x"),), child=Item(id=-2, label="y"))
    with pytest.raises(LocalProtocolError, match="id must be non-negative"):
        encode_frame(unchecked)
    data = encode_frame(unchecked, nested_checked=True)
    with pytest.raises(RemoteProtocolError, match="id must be non-negative"):
        decode_frame(data)  # the receiving side checks everything
    with pytest.raises(LocalProtocolError, match="n must be non-negative"):
        encode_frame(sample(n=-1), nested_checked=True)
    with pytest.raises(LocalProtocolError, match="Sample.items"):
        encode_frame(sample(items=(Item(id=1, label=b"not a str"),)), nested_checked=True)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="Sample"):
        encode_frame(sample(items=(Item(id=2**64, label="x"),)), nested_checked=True)
    with pytest.raises(LocalProtocolError, match="Sample.items"):
        encode_frame(sample(items=(Item(id=1, label="x" * (limits.MAX_STR_LEN + 1)),)), nested_checked=True)


def test_decode_struct_refuses_a_frame_class() -> None:
    with pytest.raises(TypeError):
        decode_struct(Sample, msgpack.packb([]))


def test_a_schema_deeper_than_the_cap_is_refused_when_declared() -> None:
    # Typed decoding relies on schemas nesting at most MAX_DEPTH arrays (it skips the walk).
    inner: Any = bytes
    for _ in range(limits.MAX_DEPTH):
        inner = tuple[inner, ...]  # the struct's own array makes MAX_DEPTH + 1
    too_deep = type("TooDeep", (Struct,), {"__annotations__": {"field": inner}, "check": lambda self: None})
    with pytest.raises(TypeError, match="MAX_DEPTH"):
        struct(too_deep)
    just_right = type("JustRight", (Struct,), {"__annotations__": {"field": inner.__args__[0]}, "check": lambda self: None})
    struct(just_right)
