"""msgpack frame codec with hard caps and strict types.

A *frame* is a frozen, keyword-only dataclass registered under a small integer tag; on the wire
it is the msgpack array ``[tag, field1, field2, ...]``. Nested *structs* (e.g. an envelope inside
a batch) are plain arrays of their fields. Decoding never trusts the input: the byte length,
every string/bin/array/map length and the nesting depth are capped (``core.limits``), ext types
are refused, and every field is checked against its declared type. Anything wrong is a
``RemoteProtocolError``; no other exception escapes :func:`decode_frame`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import msgpack

from . import limits
from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "Struct",
    "Frame",
    "frame",
    "struct",
    "encode_frame",
    "decode_frame",
    "encode_struct",
    "decode_struct",
    "packb",
    "unpackb",
    "registered_frames",
    "FrameSet",
    "ANY_FRAME",
    "frames_declared_in",
]

T = TypeVar("T")

_Check = Callable[[Any], Any]


class Struct:
    """Base of wire structs. Subclasses may override :meth:`check` to validate values."""

    _wire_fields: ClassVar[tuple[tuple[str, _Check], ...]] = ()
    _wire_out: ClassVar[tuple[tuple[str, _Check], ...]] = ()
    if typing.TYPE_CHECKING:  # the decorators make every subclass a dataclass (dataclasses.replace takes them)
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def check(self) -> None:
        """Raise ``ValueError`` when field values are out of range (types are already checked)."""


class Frame(Struct):
    """A top-level message, tagged on the wire."""

    TAG: ClassVar[int]


#: every frame of every endpoint: a tag names one frame protocol-wide, so a frame that reaches
#: the wrong endpoint is recognised and named in the refusal
_REGISTRY: dict[int, type[Frame]] = {}


def registered_frames() -> dict[int, type[Frame]]:
    return dict(_REGISTRY)


class FrameSet:
    """The frames one endpoint speaks (the handshake, ``/client``, ``/federation``). Decoding
    on an endpoint knows only its set: a device channel cannot even decode a federation
    ``Push``. A registered frame of another endpoint is refused with ``foreign_code``."""

    __slots__ = ("name", "foreign_code", "_by_tag")

    def __init__(self, name: str, frames: typing.Iterable[type[Frame]], *, foreign_code: str = "unexpected_frame") -> None:
        self.name = name
        self.foreign_code = foreign_code
        self._by_tag: dict[int, type[Frame]] = {}
        for cls in frames:
            if _REGISTRY.get(getattr(cls, "TAG", -1)) is not cls:
                raise TypeError(f"{name}: {cls!r} is not a registered frame")
            self._by_tag[cls.TAG] = cls

    def __contains__(self, cls: object) -> bool:
        return isinstance(cls, type) and self._by_tag.get(getattr(cls, "TAG", -1)) is cls

    def __iter__(self) -> typing.Iterator[type[Frame]]:
        return iter(sorted(self._by_tag.values(), key=lambda cls: cls.TAG))

    def __len__(self) -> int:
        return len(self._by_tag)

    def __repr__(self) -> str:
        return f"FrameSet({self.name!r}, {len(self)} frames)"

    def lookup(self, tag: int) -> type[Frame]:
        """The frame of ``tag`` in this set, or RemoteProtocolError."""
        cls = self._by_tag.get(tag)
        if cls is not None:
            return cls
        other = _REGISTRY.get(tag)
        if other is None:
            raise RemoteProtocolError(f"unknown frame tag {tag}")
        raise RemoteProtocolError(f"{other.__name__} (frame tag {tag}) is not a {self.name} frame", code=self.foreign_code)


def frames_declared_in(module: str) -> list[type[Frame]]:
    """The registered frames whose class a module declares (call it after the last one)."""
    return [cls for _, cls in sorted(_REGISTRY.items()) if cls.__module__ == module]


class _AnyFrame(FrameSet):
    """Every registered frame, for tools and tests that read frames of any endpoint."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("registered", ())

    def lookup(self, tag: int) -> type[Frame]:
        cls = _REGISTRY.get(tag)
        if cls is None:
            raise RemoteProtocolError(f"unknown frame tag {tag}")
        return cls

    def __contains__(self, cls: object) -> bool:
        return isinstance(cls, type) and _REGISTRY.get(getattr(cls, "TAG", -1)) is cls

    def __iter__(self) -> typing.Iterator[type[Frame]]:
        return iter([cls for _, cls in sorted(_REGISTRY.items())])

    def __len__(self) -> int:
        return len(_REGISTRY)


#: decoding with no endpoint: any registered frame (never used on a channel)
ANY_FRAME: FrameSet = _AnyFrame()


# Type checkers ---------------------------------------------------------------------------


def _fail(expected: str, value: Any) -> typing.NoReturn:
    raise ValueError(f"expected {expected}, got {type(value).__name__}")


def _check_int(v: Any) -> int:
    if type(v) is not int:
        _fail("int", v)
    return v


def _check_bool(v: Any) -> bool:
    if type(v) is not bool:
        _fail("bool", v)
    return v


def _check_str(v: Any) -> str:
    if type(v) is not str:
        _fail("str", v)
    return v


def _check_bytes(v: Any) -> bytes:
    if type(v) is not bytes:
        _fail("bytes", v)
    return v


# Encoding: the same type rules checked on the way out, in one pass that also applies the
# decoder's per-item caps and every check() (so encoding never needs to decode).


def _out_int(v: Any) -> int:
    if type(v) is int:
        return v
    if isinstance(v, int) and type(v) is not bool:
        return int(v)  # an IntEnum member goes out as what the peer decodes: a plain int
    _fail("int", v)


def _out_str(v: Any) -> str:
    if type(v) is not str:
        _fail("str", v)
    # the cap counts UTF-8 bytes, at most 4 per character
    if len(v) * 4 > limits.MAX_STR_LEN and len(v.encode("utf-8", "surrogatepass")) > limits.MAX_STR_LEN:
        raise ValueError("string exceeds MAX_STR_LEN")
    return v


def _out_bytes(v: Any) -> bytes:
    if type(v) is not bytes:
        _fail("bytes", v)
    if len(v) > limits.MAX_BIN_LEN:
        raise ValueError("binary exceeds MAX_BIN_LEN")
    return v


_SCALARS_IN: dict[Any, _Check] = {int: _check_int, bool: _check_bool, str: _check_str, bytes: _check_bytes}
_SCALARS_OUT: dict[Any, _Check] = {int: _out_int, bool: _check_bool, str: _out_str, bytes: _out_bytes}


def _field_fn(tp: Any, *, out: bool) -> _Check:
    """For a field of wire type ``tp``: the decoder's checker (wire value -> field value) or,
    with ``out``, the encoder's converter (field value -> wire value). Both raise ValueError."""
    scalar = (_SCALARS_OUT if out else _SCALARS_IN).get(tp)
    if scalar is not None:
        return scalar
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = _field_fn(args[0] if args[1] is type(None) else args[1], out=out)
        return lambda v: None if v is None else inner(v)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _field_fn(args[0], out=out)

        def array_in(v: Any) -> tuple[Any, ...]:
            if type(v) is not list:
                _fail("array", v)
            return tuple(item(x) for x in v)

        def array_out(v: Any) -> list[Any]:
            if type(v) is not tuple:
                _fail("tuple", v)
            if len(v) > limits.MAX_ARRAY_LEN:
                raise ValueError("array exceeds MAX_ARRAY_LEN")
            return [item(x) for x in v]

        return array_out if out else array_in
    if isinstance(tp, type) and issubclass(tp, Struct) and not issubclass(tp, Frame):

        def struct_out(v: Any) -> list[Any]:
            if type(v) is not tp:
                _fail(tp.__name__, v)
            return _struct_out(v)

        return struct_out if out else lambda v: _decode_struct(tp, v)
    raise TypeError(f"unsupported wire field type {tp!r}")


def _struct_out(obj: Struct) -> list[Any]:
    """The wire array of ``obj``; ValueError for what a decoder would refuse."""
    try:
        value = [out(getattr(obj, name)) for name, out in obj._wire_out]
        obj.check()  # only once the types are known good, as the decoder does
    except ValueError as exc:
        raise ValueError(f"{type(obj).__name__}: {exc}") from None
    return value


def _nesting(tp: Any) -> int:
    """How many arrays deep a value of wire type ``tp`` goes (0 for a scalar)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return max(_nesting(a) for a in args if a is not type(None))
    if typing.get_origin(tp) is tuple:
        return 1 + _nesting(args[0])
    if isinstance(tp, type) and issubclass(tp, Struct):
        hints = typing.get_type_hints(tp)
        return 1 + max((_nesting(hints[f.name]) for f in dataclasses.fields(tp)), default=0)
    return 0


def _compile(cls: type[Struct]) -> None:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    cls._wire_fields = tuple((f.name, _field_fn(hints[f.name], out=False)) for f in fields)
    cls._wire_out = tuple((f.name, _field_fn(hints[f.name], out=True)) for f in fields)
    # Typed decoding skips unpackb's nesting walk: a value deeper than its schema fails the
    # field types, so the schema must stay within the cap.
    if _nesting(cls) > limits.MAX_DEPTH:
        raise TypeError(f"{cls.__name__} nests deeper than MAX_DEPTH")


@typing.dataclass_transform(frozen_default=True, kw_only_default=True)
def struct(cls: type[T]) -> type[T]:
    """Class decorator: make ``cls`` a frozen keyword-only dataclass usable as a nested struct."""
    dc = dataclasses.dataclass(frozen=True, kw_only=True, slots=True)(cls)
    _compile(dc)  # type: ignore[arg-type]
    return dc


@typing.dataclass_transform(frozen_default=True, kw_only_default=True)
def frame(tag: int) -> Callable[[type[T]], type[T]]:
    """Class decorator: register a top-level frame under ``tag``."""

    def wrap(cls: type[T]) -> type[T]:
        if tag in _REGISTRY:
            raise RuntimeError(f"frame tag {tag} registered twice")
        dc = dataclasses.dataclass(frozen=True, kw_only=True, slots=True)(cls)
        dc.TAG = tag  # type: ignore[attr-defined]
        _compile(dc)  # type: ignore[arg-type]
        _REGISTRY[tag] = dc  # type: ignore[assignment]
        return dc

    return wrap


# Encoding --------------------------------------------------------------------------------


def _pack_checked(obj: Struct, tag: int | None) -> bytes:
    """Pack ``obj`` (as a frame with ``tag``, or a lone struct), refusing what a decoder would
    reject: field types, per-item caps and check()s on the way out, then the frame cap."""
    what = type(obj).__name__
    try:
        fields = _struct_out(obj)
        data = packb(fields if tag is None else [tag, *fields])
    except ValueError as exc:  # says which struct: "Push: Envelope: ..."
        raise LocalProtocolError(f"invalid {exc}") from None
    except (TypeError, OverflowError) as exc:  # an int out of range, a str msgpack cannot take
        raise LocalProtocolError(f"cannot encode {what}: {type(exc).__name__}") from None
    if len(data) > limits.MAX_FRAME_BYTES:
        raise LocalProtocolError(f"{what} exceeds MAX_FRAME_BYTES")
    return data


def encode_frame(obj: Frame) -> bytes:
    """Serialise a frame; refuses values that the receiving side would reject."""
    if not isinstance(obj, Frame) or _REGISTRY.get(getattr(obj, "TAG", -1)) is not type(obj):
        raise LocalProtocolError(f"not a registered frame: {type(obj).__name__}")
    return _pack_checked(obj, obj.TAG)


def encode_struct(obj: Struct) -> bytes:
    """Serialise one nested struct on its own (e.g. to keep it in a store), checked like a
    frame: the result always decodes with :func:`decode_struct`."""
    if not isinstance(obj, Struct) or isinstance(obj, Frame) or not type(obj)._wire_fields:
        raise LocalProtocolError(f"not a wire struct: {type(obj).__name__}")
    return _pack_checked(obj, None)


def packb(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)  # msgpack ships no type hints
    return data


# Decoding --------------------------------------------------------------------------------


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError("msgpack ext types are not allowed")


def _depth_ok(value: Any, depth: int) -> bool:
    if depth > limits.MAX_DEPTH:
        return False
    if type(value) is list:
        return all(_depth_ok(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(_depth_ok(v, depth + 1) for v in value.values())
    return True


def unpackb(data: bytes, *, max_bytes: int = limits.MAX_FRAME_BYTES) -> Any:
    """Decode one msgpack value under every cap, or raise RemoteProtocolError."""
    value = _unpack(data, max_bytes)
    if not _depth_ok(value, 0):
        raise RemoteProtocolError(f"frame nesting exceeds {limits.MAX_DEPTH}")
    return value


def _unpack(data: bytes, max_bytes: int = limits.MAX_FRAME_BYTES) -> Any:
    """``unpackb`` without the nesting walk: for typed decoding, whose schemas nest less than
    MAX_DEPTH (checked when a struct is declared), so anything deeper fails its field types."""
    if type(data) is not bytes:
        raise RemoteProtocolError("frame must be bytes")
    if len(data) > max_bytes:
        raise RemoteProtocolError(f"frame of {len(data)} bytes exceeds the {max_bytes}-byte cap")
    try:
        value = msgpack.unpackb(
            data,
            use_list=True,
            raw=False,
            strict_map_key=True,
            max_str_len=limits.MAX_STR_LEN,
            max_bin_len=limits.MAX_BIN_LEN,
            max_array_len=limits.MAX_ARRAY_LEN,
            max_map_len=limits.MAX_MAP_LEN,
            max_ext_len=0,
            ext_hook=_refuse_ext,
        )
    except RecursionError:
        raise RemoteProtocolError("frame nesting too deep") from None
    except Exception as exc:  # msgpack raises a zoo of types (ValueError, StackError, ...)
        raise RemoteProtocolError(f"malformed msgpack: {type(exc).__name__}") from None
    return value


def _decode_struct(cls: type[T], value: Any) -> T:
    fields = cls._wire_fields  # type: ignore[attr-defined]
    if type(value) is not list or len(value) != len(fields):
        raise ValueError(f"{cls.__name__}: expected an array of {len(fields)} fields")
    kwargs = {}
    for (name, check), item in zip(fields, value):
        try:
            kwargs[name] = check(item)
        except ValueError as exc:
            raise ValueError(f"{cls.__name__}.{name}: {exc}") from None
    obj = cls(**kwargs)
    obj.check()  # type: ignore[attr-defined]
    return obj


def decode_frame(data: bytes, frames: FrameSet = ANY_FRAME) -> Frame:
    """Decode and type-check one frame of ``frames`` (an endpoint's set; by default any
    registered frame, for tools and tests). Raises only RemoteProtocolError."""
    value = _unpack(data)
    if type(value) is not list or not value or type(value[0]) is not int:
        raise RemoteProtocolError("frame must be an array starting with an integer tag")
    cls = frames.lookup(value[0])
    try:
        return _decode_struct(cls, value[1:])
    except ValueError as exc:
        raise RemoteProtocolError(f"invalid frame: {exc}") from None


def decode_struct(cls: type[T], data: bytes) -> T:
    """Decode and check one struct of type ``cls`` encoded by :func:`encode_struct`.
    Raises only RemoteProtocolError (a ``cls`` that is no wire struct is a TypeError)."""
    if not (isinstance(cls, type) and issubclass(cls, Struct)) or issubclass(cls, Frame) or not cls._wire_fields:
        raise TypeError(f"not a wire struct: {cls!r}")
    value = _unpack(data)
    try:
        return _decode_struct(cls, value)
    except ValueError as exc:
        raise RemoteProtocolError(f"invalid {cls.__name__}: {exc}") from None
