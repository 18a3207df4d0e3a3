"""The MLS codec (core/mls/codec/): round trips of every form, and malformed or oversized input
refused with one DecodeError (code mls_malformed) before anything is allocated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.limits import MLS_MAX_MESSAGE_BYTES
from sonet.core.mls.codec import VARINT_MAX, DecodeError, Encodable, Reader, Writer, decode_all, encode_varint


def test_decode_error_is_a_remote_protocol_error_with_its_code() -> None:
    e = DecodeError("truncated")
    assert isinstance(e, RemoteProtocolError)
    assert e.code == "mls_malformed"
    assert str(e) == "MLS: truncated"


def test_fixed_width_integers_are_big_endian() -> None:
    w = Writer()
    w.u8(0x01)
    w.u16(0x0203)
    w.u32(0x04050607)
    w.u64(0x08090A0B0C0D0E0F)
    data = w.bytes()
    assert data == bytes(range(1, 16))
    r = Reader(data)
    assert (r.u8(), r.u16(), r.u32(), r.u64()) == (0x01, 0x0203, 0x04050607, 0x08090A0B0C0D0E0F)
    r.done()


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (63, "3f"), (64, "4040"), (16383, "7fff"), (16384, "80004000"), (VARINT_MAX, "bfffffff")],
)
def test_varint_uses_the_shortest_form(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert decode_all(bytes.fromhex(encoded), Reader.varint) == value


@given(st.integers(min_value=0, max_value=VARINT_MAX))
def test_varint_round_trips(value: int) -> None:
    assert decode_all(encode_varint(value), Reader.varint) == value


@pytest.mark.parametrize("encoded", ["4000", "403f", "80000000", "80003fff"])
def test_a_non_minimal_varint_is_refused(encoded: str) -> None:
    with pytest.raises(DecodeError, match="not minimally encoded"):
        Reader(bytes.fromhex(encoded)).varint()


@pytest.mark.parametrize("encoded", ["c0", "ff", "c000000000000001"])
def test_the_0b11_varint_prefix_is_refused(encoded: str) -> None:
    with pytest.raises(DecodeError, match="invalid prefix 0b11"):
        Reader(bytes.fromhex(encoded)).varint()


@pytest.mark.parametrize("value", [-1, VARINT_MAX + 1])
def test_writing_a_varint_out_of_range_is_our_bug(value: int) -> None:
    with pytest.raises(LocalProtocolError, match="outside"):
        Writer().varint(value)


@pytest.mark.parametrize(("method", "value"), [("u8", 256), ("u16", 1 << 16), ("u32", 1 << 32), ("u64", 1 << 64), ("u8", -1)])
def test_writing_an_integer_that_does_not_fit_is_our_bug(method: str, value: int) -> None:
    with pytest.raises(LocalProtocolError, match="does not fit"):
        getattr(Writer(), method)(value)


@pytest.mark.parametrize(
    ("data", "read"),
    [
        (b"", Reader.u8),
        (b"\x01", Reader.u16),
        (b"\x01\x02\x03", Reader.u32),
        (b"\x00" * 7, Reader.u64),
        (b"\x40", Reader.varint),  # a two-byte varint cut after its first byte
        (b"\x80\x00\x40", Reader.varint),
        (b"\x03ab", Reader.opaque),  # declares 3 bytes, holds 2
        (b"", Reader.opaque),
        (b"\x01", lambda r: r.optional(Reader.u16)),
        (b"ab", lambda r: r.raw(3)),
    ],
)
def test_truncated_input_is_refused(data: bytes, read: object) -> None:
    with pytest.raises(DecodeError):
        decode_all(data, read)  # type: ignore[arg-type]


def test_the_truncation_message_says_what_was_short() -> None:
    with pytest.raises(DecodeError, match=r"^MLS: truncated: uint16 needs 2 bytes, 1 left$"):
        Reader(b"\x01").u16()


def test_trailing_bytes_are_refused() -> None:
    assert decode_all(b"\x05", Reader.u8) == 5
    with pytest.raises(DecodeError, match="1 trailing bytes"):
        decode_all(b"\x05\x00", Reader.u8)


def test_opaque_round_trip() -> None:
    for payload in (b"", b"x", bytes(range(256)) * 70):
        w = Writer()
        w.opaque(payload)
        data = w.bytes()
        assert data[: len(encode_varint(len(payload)))] == encode_varint(len(payload))
        assert decode_all(data, Reader.opaque) == payload


def test_a_length_past_the_end_is_refused_before_reading() -> None:
    with pytest.raises(DecodeError, match="opaque of 1000 bytes runs past the end"):
        Reader(encode_varint(1000) + b"abc").opaque()
    with pytest.raises(DecodeError, match="vector of 9 bytes runs past the end"):
        Reader(b"\x09\x00\x01").vector(Reader.u8)


def test_a_length_over_the_cap_is_refused_before_reading() -> None:
    # a declared length of ~1 GiB in a 4-byte message: refused by the cap, nothing allocated
    with pytest.raises(DecodeError, match="over the cap"):
        Reader(encode_varint(VARINT_MAX)).opaque()
    with pytest.raises(DecodeError, match="vector of 17 bytes is over the cap of 16"):
        Reader(encode_varint(17) + bytes(3), max_bytes=16).vector(Reader.u8)


def test_input_over_the_cap_is_refused() -> None:
    assert MLS_MAX_MESSAGE_BYTES >= 4 * 1024 * 1024
    with pytest.raises(DecodeError, match="over the cap"):
        Reader(bytes(MLS_MAX_MESSAGE_BYTES + 1))
    with pytest.raises(DecodeError, match="5 bytes is over the cap of 4"):
        decode_all(bytes(5), Reader.u8, max_bytes=4)


def test_vector_round_trip_and_byte_length_prefix() -> None:
    w = Writer()
    w.vector([1, 2, 3], Writer.u16)
    data = w.bytes()
    assert data == bytes.fromhex("06000100020003")  # the prefix counts bytes, not items
    assert decode_all(data, lambda r: r.vector(Reader.u16)) == [1, 2, 3]
    empty = Writer()
    empty.vector([], Writer.u16)
    assert empty.bytes() == b"\x00"
    assert decode_all(b"\x00", lambda r: r.vector(Reader.u16)) == []


def test_nested_vectors_round_trip() -> None:
    value = [[b"a", b""], [], [b"xyz" * 100]]
    w = Writer()
    w.vector(value, lambda w2, inner: w2.vector(inner, Writer.opaque))
    assert decode_all(w.bytes(), lambda r: r.vector(lambda r2: r2.vector(Reader.opaque))) == value


def test_an_item_cannot_read_past_its_vector() -> None:
    # vector of 3 bytes holding u16 items: the second item would take one byte after the vector
    with pytest.raises(DecodeError, match="truncated: uint16 needs 2 bytes, 1 left"):
        decode_all(b"\x03\x00\x01\x00\xff", lambda r: r.vector(Reader.u16))


def test_the_reader_continues_after_a_vector() -> None:
    r = Reader(b"\x02\x07\x08\x09")
    assert r.vector(Reader.u8) == [7, 8]
    assert r.remaining == 1
    assert r.u8() == 9
    r.done()


def test_a_zero_byte_item_is_refused_instead_of_looping() -> None:
    with pytest.raises(DecodeError, match="zero bytes"):
        decode_all(b"\x01\x00", lambda r: r.vector(lambda _r: None))


def test_optional_round_trip_and_flags() -> None:
    for item in (None, 0, 513):
        w = Writer()
        w.optional(item, Writer.u16)
        assert decode_all(w.bytes(), lambda r: r.optional(Reader.u16)) == item
    assert decode_all(b"\x00", lambda r: r.optional(Reader.u16)) is None


@pytest.mark.parametrize("flag", [2, 0x80, 0xFF])
def test_an_optional_flag_other_than_0_or_1_is_refused(flag: int) -> None:
    with pytest.raises(DecodeError, match=f"optional presence flag {flag} "):
        decode_all(bytes([flag, 0, 1]), lambda r: r.optional(Reader.u16))


def test_raw_takes_exactly_n_bytes() -> None:
    r = Reader(b"abcdef")
    assert r.raw(4) == b"abcd"
    w = Writer()
    w.raw(b"abcd")
    assert w.bytes() == b"abcd"
    with pytest.raises(DecodeError, match="2 trailing bytes"):
        r.done()


@dataclass(frozen=True, slots=True)
class Sample(Encodable):
    """A structure as the MLS folders write them."""

    version: int
    name: bytes
    tags: list[int]
    parent: int | None

    def write(self, w: Writer) -> None:
        w.u16(self.version)
        w.opaque(self.name)
        w.vector(self.tags, Writer.u32)
        w.optional(self.parent, Writer.u8)

    @classmethod
    def read(cls, r: Reader) -> Self:
        return cls(r.u16(), r.opaque(), r.vector(Reader.u32), r.optional(Reader.u8))


def test_encodable_round_trip() -> None:
    sample = Sample(1, b"alice", [7, 1 << 31], 3)
    data = sample.to_bytes()
    assert data == bytes.fromhex("0001") + b"\x05alice" + bytes.fromhex("080000000780000000") + b"\x01\x03"
    assert Sample.from_bytes(data) == sample


def test_encodable_from_bytes_refuses_trailing_and_truncated_bytes() -> None:
    data = Sample(1, b"", [], None).to_bytes()
    with pytest.raises(DecodeError, match="trailing"):
        Sample.from_bytes(data + b"\x00")
    with pytest.raises(DecodeError, match="truncated"):
        Sample.from_bytes(data[:-1])


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        Sample.from_bytes(data)
    except DecodeError:
        pass
    else:
        assert Sample.from_bytes(data).to_bytes() == data  # what decodes is canonical
