"""The msgspec-backed frame codec (core.wire) against what it replaced and what it adds.

- The wire is byte-identical to msgpack's packing of the frame's fields (what the codec wrote
  before it ran on msgspec), for every protocol frame and at the encoding boundaries.
- Decoding demands every field: a default is filled in when a struct is built, never for a
  peer that left a field out.
- Wire structs behave as the frozen keyword-only dataclasses they were (dataclasses.replace).
- ``encoded``: a stored struct's bytes spliced into a frame are written as they are.
- A refusal says where, in the schema's names.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import msgpack
import pytest

from fuzz.samples import sample_frame
from sonet.core import limits
from sonet.core.client_api import CLIENT_FRAMES, SendBatch
from sonet.core.envelope import Envelope, Kind
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.federation_api import FEDERATION_FRAMES, Push, Report, Transit
from sonet.core.handshake import HANDSHAKE_FRAMES
from sonet.core.wire import Frame, Struct, decode_frame, decode_struct, encode_frame, encode_struct, encoded, frame, struct


def reference(value: Any) -> Any:
    """The plain msgpack value of a frame, struct or field, as the codec built it before."""
    if isinstance(value, Frame):
        return [value.TAG, *(reference(getattr(value, name)) for name, _ in value._wire_fields)]
    if isinstance(value, Struct):
        return [reference(getattr(value, name)) for name, _ in value._wire_fields]
    if isinstance(value, tuple):
        return [reference(v) for v in value]
    if isinstance(value, enum.IntEnum):
        return int(value)
    return value


def packed(value: Any) -> bytes:
    return msgpack.packb(reference(value), use_bin_type=True)


PROTOCOL_FRAMES = sorted({cls for frames in (HANDSHAKE_FRAMES, CLIENT_FRAMES, FEDERATION_FRAMES) for cls in frames}, key=lambda c: c.TAG)


@pytest.mark.parametrize("cls", PROTOCOL_FRAMES, ids=[cls.__name__ for cls in PROTOCOL_FRAMES])
def test_every_protocol_frame_is_byte_identical_to_msgpack(cls: type[Frame]) -> None:
    obj = sample_frame(cls)
    data = encode_frame(obj)
    assert data == packed(obj)
    assert decode_frame(data) == obj
    frames = next(fs for fs in (HANDSHAKE_FRAMES, CLIENT_FRAMES, FEDERATION_FRAMES) if cls in fs)
    assert decode_frame(data, frames) == obj


@frame(tag=1010)
class Boundaries(Frame):
    n: tuple[int, ...]
    s: tuple[str, ...]
    b: tuple[bytes, ...]
    flag: bool
    none: bytes | None


LENGTHS = (0, 1, 15, 16, 31, 32, 255, 256, 4095, 4096)


def test_encoding_boundaries_are_byte_identical() -> None:
    ints = (0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1)
    negatives = (-1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63))
    obj = Boundaries(
        n=ints + negatives,
        s=tuple("x" * n for n in LENGTHS) + ("é" * 20, "\U0001f600"),
        b=tuple(b"y" * n for n in (*LENGTHS, 65535, 65536)),
        flag=False,
        none=None,
    )
    data = encode_frame(obj)
    assert data == packed(obj)
    assert decode_frame(data) == obj
    for count in (15, 16, limits.MAX_ARRAY_LEN):  # fixarray, array16
        many = Boundaries(n=(1,) * count, s=(), b=(), flag=True, none=b"")
        assert encode_frame(many) == packed(many)


def test_an_int_enum_goes_out_as_its_int() -> None:
    env = Envelope(v=1, id=bytes(16), to="bob@beta.example", device=1, expires=10, kind=Kind.SEALED, body=b"x")
    plain = dataclasses.replace(env, kind=1)
    assert encode_struct(env) == encode_struct(plain) == packed(plain)
    assert type(decode_struct(Envelope, encode_struct(env)).kind) is int


# Defaults --------------------------------------------------------------------------------


def envelope() -> Envelope:
    return Envelope(v=1, id=bytes(16), to="bob@beta.example", device=2, expires=10, kind=1, body=b"sealed")


def test_a_default_is_filled_in_when_built_not_when_decoded() -> None:
    item = Transit(origin="alpha.example", dest="beta.example", hops=2, envelope=envelope(), report=None)
    assert item.access == b"" and item.group is None
    full = reference(item)
    assert decode_struct(Transit, msgpack.packb(full, use_bin_type=True)) == item
    for missing in (1, 2):  # a peer always sends every field: one left out is refused
        with pytest.raises(RemoteProtocolError, match="Transit"):
            decode_struct(Transit, msgpack.packb(full[:-missing], use_bin_type=True))
    batch = reference(SendBatch(request=3, envelopes=(envelope(),)))
    assert decode_frame(msgpack.packb(batch, use_bin_type=True), CLIENT_FRAMES) == SendBatch(request=3, envelopes=(envelope(),))
    with pytest.raises(RemoteProtocolError, match="SendBatch") as info:
        decode_frame(msgpack.packb(batch[:-1], use_bin_type=True), CLIENT_FRAMES)
    assert info.value.code == "bad_input"


# Dataclass behaviour ---------------------------------------------------------------------


def test_wire_structs_behave_as_frozen_keyword_only_dataclasses() -> None:
    env = envelope()
    assert dataclasses.is_dataclass(env)
    assert [f.name for f in dataclasses.fields(env)] == ["v", "id", "to", "device", "expires", "kind", "body"]
    other = dataclasses.replace(env, body=b"other")
    assert type(other) is Envelope and other.body == b"other" and other.to == env.to
    assert dataclasses.replace(Transit(origin="a.example", dest="b.example", hops=1, envelope=env, report=None), hops=0).access == b""
    with pytest.raises(AttributeError):
        env.body = b"changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Envelope(1, bytes(16), "bob@beta.example", 2, 10, 1, b"")  # type: ignore[misc]
    assert env == envelope() and hash(env) == hash(envelope()) and env != other


# Spliced structs (encoded) ---------------------------------------------------------------


def transit(n: int) -> Transit:
    env = dataclasses.replace(envelope(), id=n.to_bytes(16, "big"))
    return Transit(origin="alpha.example", dest="beta.example", hops=2, envelope=env, report=None)


def test_a_spliced_struct_is_written_as_it_is() -> None:
    items = tuple(transit(n) for n in range(5))
    stored = [encode_struct(item) for item in items]
    spliced = Push(request=9, items=tuple(encoded(Transit, data) for data in stored))
    assert encode_frame(spliced) == encode_frame(Push(request=9, items=items))
    assert decode_frame(encode_frame(spliced), FEDERATION_FRAMES) == Push(request=9, items=items)


def test_spliced_bytes_are_still_type_checked_and_the_frame_checked() -> None:
    report = Report(id=bytes(16), account="bob@beta.example", device=1, outcome="ok", at=1)
    with pytest.raises(LocalProtocolError, match=r"Push.items\[0\]"):  # a Report's bytes where a Transit goes
        encode_frame(Push(request=1, items=(encoded(Transit, encode_struct(report)),)))
    with pytest.raises(LocalProtocolError, match="malformed|Push"):
        encode_frame(Push(request=1, items=(encoded(Transit, encode_struct(transit(1))[:-1]),)))
    over = reference(transit(1))
    over[0] = "a" * (limits.MAX_STR_LEN + 1)  # msgspec's caps hold for spliced bytes too
    with pytest.raises(LocalProtocolError, match=r"Push.items\[0\].origin"):
        encode_frame(Push(request=1, items=(encoded(Transit, msgpack.packb(over, use_bin_type=True)),)))
    with pytest.raises(LocalProtocolError, match="push holds"):  # the frame's own check()
        encode_frame(Push(request=1, items=tuple(encoded(Transit, encode_struct(transit(1))) for _ in range(limits.MAX_TRANSIT_PER_PUSH + 1))))


def test_a_frame_holding_spliced_and_built_structs_checks_the_built_ones() -> None:
    bad = dataclasses.replace(transit(2), hops=limits.MAX_HOPS + 1)  # fails Transit.check
    with pytest.raises(LocalProtocolError, match="hop count"):
        encode_frame(Push(request=1, items=(encoded(Transit, encode_struct(transit(1))), bad)))


def test_only_a_wire_struct_can_be_spliced() -> None:
    with pytest.raises(TypeError):
        encoded(Push, b"\x90")  # type: ignore[type-var]
    with pytest.raises(TypeError):
        encoded(int, b"\x01")  # type: ignore[type-var]


# Refusals --------------------------------------------------------------------------------


def test_a_refusal_says_where_in_the_schemas_names() -> None:
    env = reference(envelope())
    env[6] = "not bytes"
    with pytest.raises(RemoteProtocolError, match=r"SendBatch\.envelopes\[0\]\.body: Expected `bytes`, got `str`"):
        decode_frame(msgpack.packb([SendBatch.TAG, 1, [env], []], use_bin_type=True), CLIENT_FRAMES)
    with pytest.raises(RemoteProtocolError, match=r"Transit\.envelope \(Envelope\)"):
        decode_struct(Transit, msgpack.packb(["alpha.example", "beta.example", 1, [], None, b"", None], use_bin_type=True))
    with pytest.raises(RemoteProtocolError, match="not a /client frame") as info:  # the endpoint's set decides first
        decode_frame(encode_frame(Push(request=1, items=(transit(1),))), CLIENT_FRAMES)
    assert info.value.code == "unexpected_frame"


def test_a_schema_with_a_mutable_default_is_refused() -> None:
    class Mutable(Struct):
        items: tuple[int, ...] = []  # type: ignore[assignment]

    with pytest.raises(TypeError, match="immutable"):
        struct(Mutable)


def test_the_str_cap_counts_utf8_bytes_inside_arrays_too() -> None:
    def frame_with(text: str) -> bytes:
        return msgpack.packb([Boundaries.TAG, [], [text], [], True, None], use_bin_type=True)

    assert decode_frame(frame_with("é" * (limits.MAX_STR_LEN // 2))).s == ("é" * (limits.MAX_STR_LEN // 2),)
    with pytest.raises(RemoteProtocolError, match="MAX_STR_LEN"):  # within msgspec's character cap
        decode_frame(frame_with("é" * (limits.MAX_STR_LEN // 2 + 1)))
    with pytest.raises(LocalProtocolError, match="MAX_STR_LEN"):
        encode_frame(Boundaries(n=(), s=("\U0001f600" * (limits.MAX_STR_LEN // 4 + 1),), b=(), flag=True, none=None))
