"""msgpack frame codec with hard caps and strict types, run by msgspec (C).

A *frame* is a frozen, keyword-only struct registered under a small integer tag; on the wire
it is the msgpack array ``[tag, field1, field2, ...]``. Nested *structs* (e.g. an envelope inside
a batch) are plain arrays of their fields. The declared classes are ``msgspec.Struct`` types
(``array_like``, tagged for frames), so encoding and decoding a frame runs in C; the bytes are
the same msgpack as before (tests/core/test_wire_codec.py).

Decoding never trusts the input: the byte length is capped before anything is decoded; every
bin and array length is a constraint of the field's msgspec type (``core.limits``), a str is
capped in characters there and in UTF-8 bytes right after; nothing decodes deeper than its
schema (every schema is checked against MAX_DEPTH when declared); ext types, maps and
values of another type are refused; every field is decoded exactly (no defaults filled in, no
extra items); and each struct's check() runs once the types are known good. Anything wrong is
a ``RemoteProtocolError``; no other exception escapes :func:`decode_frame`. When msgspec
refuses the bytes, the refusal is classified with msgpack's capped untyped decoder
(:func:`unpackb`: malformed, over a cap, no tag, an unknown tag, a frame of another endpoint),
so every refusal keeps its code.

Encoding refuses what the peer would refuse: msgspec writes the bytes, then the same typed
decoder and checks run over them (in C but for the check()s), so encoding never trusts
Python's loose typing. A value of a struct field may be that struct's stored encoding
(:func:`encoded`, an outbox item spliced into a Push): it is written as it is, its types and
msgspec's caps are checked again, its own checks (check()s, a str's UTF-8 byte cap) only
when the frame also holds built structs. The same holds for the nested structs of a frame the caller says
were checked (``nested_checked``: they came out of a decoded frame, or out of this node's
store after one), and :func:`decode_stored` reads back what this program stored without the
check()s (typed and capped still).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeVar

import msgpack
import msgspec

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
    "decode_stored",
    "encoded",
    "packb",
    "unpackb",
    "registered_frames",
    "FrameSet",
    "ANY_FRAME",
    "frames_declared_in",
]

T = TypeVar("T")

_Check = Callable[[Any], None]


if typing.TYPE_CHECKING:  # type checkers see wire structs as the decorators declare them: frozen keyword-only dataclasses

    class _StructBase:
        __struct_fields__: ClassVar[tuple[str, ...]]
        __struct_defaults__: ClassVar[tuple[Any, ...]]

        def __init_subclass__(cls, **config: Any) -> None: ...

    _StructMetaBase = type
else:
    _StructBase = msgspec.Struct
    _StructMetaBase = msgspec.StructMeta


class _WireMeta(_StructMetaBase):
    """Every wire struct is keyword-only (msgspec does not inherit ``kw_only``)."""

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **config: Any) -> Any:
        config.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, ns, **config)


class _DefaultsMeta(_WireMeta):
    """A declared struct with defaults: its wire form has none (a decoder demands every field,
    as the peer always sends them), construction fills them in."""

    _wire_defaults: tuple[tuple[str, Any], ...]

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        for name, value in cls._wire_defaults:
            if name not in kwargs:
                kwargs[name] = value
        return super().__call__(*args, **kwargs)


class Struct(_StructBase, metaclass=_WireMeta, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Base of wire structs. Subclasses may override :meth:`check` to validate values."""

    # The class variables are declared for type checkers only: msgspec evaluated these
    # annotations again for every struct declared (twice), a good part of an import.
    if typing.TYPE_CHECKING:
        #: (name, declared type) of each field, in wire order
        _wire_fields: ClassVar[tuple[tuple[str, Any], ...]]
        #: str caps in UTF-8 bytes, nested structs' checks, then check()
        _wire_check: ClassVar[_Check]
        #: the same without nested structs' checks (for a struct whose nested ones are spliced)
        _wire_check_own: ClassVar[_Check]
        #: whether every nested struct of an instance is spliced in as msgspec.Raw
        _wire_spliced: ClassVar[Callable[[Any], bool]]
        #: how many arrays deep the struct's schema goes (checked against MAX_DEPTH)
        _wire_depth: ClassVar[int]
        #: the decorators give every subclass these (dataclasses.replace takes them)
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    _wire_fields = ()

    def check(self) -> None:
        """Raise ``ValueError`` when field values are out of range (types are already checked)."""


class Frame(Struct):
    """A top-level message, tagged on the wire."""

    if typing.TYPE_CHECKING:  # (as Struct's)
        TAG: ClassVar[int]


#: every frame of every endpoint: a tag names one frame protocol-wide, so a frame that reaches
#: the wrong endpoint is recognised and named in the refusal
_REGISTRY: dict[int, type[Frame]] = {}
#: a typed decoder per declared struct and frame (frames: of that frame alone)
_DECODERS: dict[type[Struct], msgspec.msgpack.Decoder[Any]] = {}
_ENCODER = msgspec.msgpack.Encoder()


def registered_frames() -> dict[int, type[Frame]]:
    return dict(_REGISTRY)


def _union_decoder(frames: typing.Iterable[type[Frame]]) -> msgspec.msgpack.Decoder[Any] | None:
    classes = tuple(frames)
    return msgspec.msgpack.Decoder(typing.Union[classes]) if classes else None


class FrameSet:
    """The frames one endpoint speaks (the handshake, ``/client``, ``/federation``). Decoding
    on an endpoint knows only its set: a device channel cannot even decode a federation
    ``Push``. A registered frame of another endpoint is refused with ``foreign_code``."""

    __slots__ = ("name", "foreign_code", "_by_tag", "_decoder")

    def __init__(self, name: str, frames: typing.Iterable[type[Frame]], *, foreign_code: str = "unexpected_frame") -> None:
        self.name = name
        self.foreign_code = foreign_code
        self._by_tag: dict[int, type[Frame]] = {}
        for cls in frames:
            if _REGISTRY.get(getattr(cls, "TAG", -1)) is not cls:
                raise TypeError(f"{name}: {cls!r} is not a registered frame")
            self._by_tag[cls.TAG] = cls
        self._decoder = _union_decoder(self._by_tag.values())

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

    def decoder(self) -> msgspec.msgpack.Decoder[Any] | None:
        """The typed decoder of exactly this set's frames (None for an empty set)."""
        return self._decoder


def frames_declared_in(module: str) -> list[type[Frame]]:
    """The registered frames whose class a module declares (call it after the last one)."""
    return [cls for _, cls in sorted(_REGISTRY.items()) if cls.__module__ == module]


class _AnyFrame(FrameSet):
    """Every registered frame, for tools and tests that read frames of any endpoint."""

    __slots__ = ("_decoded_tags",)

    def __init__(self) -> None:
        super().__init__("registered", ())
        self._decoded_tags: frozenset[int] = frozenset()

    def lookup(self, tag: int) -> type[Frame]:
        cls = _REGISTRY.get(tag)
        if cls is None:
            raise RemoteProtocolError(f"unknown frame tag {tag}")
        return cls

    def decoder(self) -> msgspec.msgpack.Decoder[Any] | None:
        if self._decoded_tags != _REGISTRY.keys():  # frames registered since (tests, tools)
            self._decoder = _union_decoder(_REGISTRY.values())
            self._decoded_tags = frozenset(_REGISTRY)
        return self._decoder

    def __contains__(self, cls: object) -> bool:
        return isinstance(cls, type) and _REGISTRY.get(getattr(cls, "TAG", -1)) is cls

    def __iter__(self) -> typing.Iterator[type[Frame]]:
        return iter([cls for _, cls in sorted(_REGISTRY.items())])

    def __len__(self) -> int:
        return len(_REGISTRY)


#: decoding with no endpoint: any registered frame (never used on a channel)
ANY_FRAME: FrameSet = _AnyFrame()


# Declaring structs: each field's msgspec type with its caps, and its checks ----------------

_STR = Annotated[str, msgspec.Meta(max_length=limits.MAX_STR_LEN)]  # characters: the byte cap follows
_BYTES = Annotated[bytes, msgspec.Meta(max_length=limits.MAX_BIN_LEN)]
_SCALARS: dict[Any, Any] = {int: int, bool: bool, str: _STR, bytes: _BYTES}


def _optional_of(tp: Any) -> Any:
    """``X`` for ``X | None`` / ``Optional[X]``, else None."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        return args[0] if args[1] is type(None) else args[1]
    return None


def _array_of(tp: Any) -> Any:
    """``X`` for ``tuple[X, ...]``, else None."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def _is_nested_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Struct) and not issubclass(tp, Frame)


def _wire_type(tp: Any) -> Any:
    """The msgspec type that decodes a field declared ``tp``, with the caps of core.limits."""
    scalar = _SCALARS.get(tp)
    if scalar is not None:
        return scalar
    inner = _optional_of(tp)
    if inner is not None:
        return typing.Optional[_wire_type(inner)]
    item = _array_of(tp)
    if item is not None:
        return Annotated[tuple[_wire_type(item), ...], msgspec.Meta(max_length=limits.MAX_ARRAY_LEN)]  # type: ignore[misc]
    if _is_nested_struct(tp) and tp in _DECODERS:
        return tp
    raise TypeError(f"unsupported wire field type {tp!r}")


def _str_cap(v: str) -> None:
    # msgspec capped the characters; the cap counts UTF-8 bytes, at most 4 per character
    if len(v.encode("utf-8", "surrogatepass")) > limits.MAX_STR_LEN:
        raise ValueError("string exceeds MAX_STR_LEN")


def _check_lines(tp: Any, value: str, env: dict[str, Any], *, nested: bool, depth: int = 0) -> list[str]:
    """Python lines checking ``value`` (an expression) of declared type ``tp`` after msgspec
    decoded it: the str byte cap (only over MAX_STR_LEN / 4 characters) and, with ``nested``,
    nested structs' checks; none when there is nothing to check."""
    if tp is str:
        return [f"if len({value}) > {limits.MAX_STR_LEN // 4}: _str_cap({value})"]
    if _is_nested_struct(tp):
        env[tp.__name__] = tp._wire_check
        return [f"{tp.__name__}({value})"] if nested else []
    inner = _optional_of(tp)
    if inner is not None:
        lines = _check_lines(inner, value, env, nested=nested, depth=depth)
        return [f"if {value} is not None:", *("    " + line for line in lines)] if lines else []
    item = _array_of(tp)
    if item is not None:
        lines = _check_lines(item, f"x{depth}", env, nested=nested, depth=depth + 1)
        return [f"for x{depth} in {value}:", *("    " + line for line in lines)] if lines else []
    return []


def _splice_lines(tp: Any, value: str, depth: int = 0) -> list[str]:
    """Lines that return False when ``value`` holds a nested struct that is not spliced in
    as ``msgspec.Raw``."""
    if _is_nested_struct(tp):
        return [f"if type({value}) is not _Raw: return False"]
    inner = _optional_of(tp)
    if inner is not None:
        lines = _splice_lines(inner, value, depth)
        return [f"if {value} is not None:", *("    " + line for line in lines)] if lines else []
    item = _array_of(tp)
    if item is not None:
        lines = _splice_lines(item, f"x{depth}", depth + 1)
        return [f"for x{depth} in {value}:", *("    " + line for line in lines)] if lines else []
    return []


def _compiled(name: str, body: list[str], env: dict[str, Any]) -> Any:
    # generated like dataclasses' methods: these run for every item of every frame
    source = f"def {name}(obj):\n" + "".join(f"    {line}\n" for line in body or ["pass"])
    exec(source, env)
    return env[name]


def _struct_check(cls: type[Struct], hints: dict[str, Any], *, nested: bool) -> _Check:
    """The checks of a decoded ``cls``: each field's (with ``nested``, nested structs' checks
    too), then ``cls.check``."""
    env: dict[str, Any] = {"_str_cap": _str_cap, "_own": cls.check}
    body: list[str] = []
    for name in cls.__struct_fields__:
        lines = _check_lines(hints[name], f"obj.{name}", env, nested=nested)
        if lines:
            body += ["try:", *("    " + line for line in lines), "except ValueError as exc:"]
            body.append(f"    raise ValueError({cls.__name__ + '.' + name + ': '!r} + str(exc)) from None")
    if cls.check is not Struct.check:
        body.append("_own(obj)")
    return _compiled("check", body, env)  # type: ignore[no-any-return]


def _struct_spliced(cls: type[Struct], hints: dict[str, Any]) -> Callable[[Any], bool]:
    """Whether a ``cls`` to encode holds nested structs only as ``msgspec.Raw`` (see encoded())."""
    body = [line for name in cls.__struct_fields__ for line in _splice_lines(hints[name], f"obj.{name}")]
    if not body:  # no nested structs: nothing spliced
        return lambda obj: False
    return _compiled("spliced", [*body, "return True"], {"_Raw": msgspec.Raw})  # type: ignore[no-any-return]


def _nesting(tp: Any) -> int:
    """How many arrays deep a value of wire type ``tp`` goes (0 for a scalar)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return max(_nesting(a) for a in args if a is not type(None))
    if typing.get_origin(tp) is tuple:
        return 1 + _nesting(args[0])
    if isinstance(tp, type) and issubclass(tp, Struct):
        return tp._wire_depth  # only declared structs nest (_wire_type)
    return 0


def _field_hints(cls: type[Struct]) -> dict[str, Any]:
    """``typing.get_type_hints(cls)`` for the fields only: evaluating every base's ClassVar
    annotations again for each declared struct was most of a process's import time."""
    hints: dict[str, Any] = {}
    for base in cls.__mro__:
        own = base.__dict__.get("__annotations__", {})
        wanted = {name: own[name] for name in cls.__struct_fields__ if name in own and name not in hints}
        if wanted:  # evaluated in the module that declared them, as get_type_hints does
            holder = type(base.__name__, (), {"__annotations__": wanted, "__module__": base.__module__})
            hints.update(typing.get_type_hints(holder))
    return hints


class _LazyDataclassFields:
    """``__dataclass_fields__`` of a wire struct (dataclasses.replace / fields take them), built
    on first use: making them for every struct at import cost every process ~40 ms."""

    def __init__(self, name: str, fields: list[tuple[str, Any]]) -> None:
        self._name = name
        self._fields = fields

    def __get__(self, obj: Any, owner: type) -> Any:
        made = typing.cast(Any, dataclasses.make_dataclass(self._name, self._fields)).__dataclass_fields__
        owner.__dataclass_fields__ = made  # type: ignore[attr-defined]
        return made


class _LazyCompiled:
    """A wire struct's generated check, compiled on first use: compiling three functions for
    every struct at import cost every process (each node and CLI start) tens of milliseconds,
    and a process uses a fraction of the frames. Then a plain staticmethod of the class."""

    def __init__(self, cls: type[Any], attr: str, build: Callable[[], Any]) -> None:
        self._cls = cls
        self._attr = attr
        self._build = build

    def __get__(self, obj: Any, owner: type) -> Any:
        fn = self._build()  # two threads may both build it: the same function, either kept
        setattr(self._cls, self._attr, staticmethod(fn))
        return fn


def _declare(cls: type[Any], tag: int | None) -> Any:
    """The wire class of a declared one: a subclass whose fields carry their caps and have no
    defaults (the class fills those in when built), tagged for a frame."""
    if not (isinstance(cls, type) and issubclass(cls, Struct)):
        raise TypeError(f"{cls!r} is not a subclass of wire.Struct")
    hints = _field_hints(cls)
    names: tuple[str, ...] = cls.__struct_fields__
    wire_types = {name: _wire_type(hints[name]) for name in names}
    # Typed decoding has no nesting walk: a value deeper than its schema fails the field
    # types, so the schema must stay within the cap.
    depth = 1 + max((_nesting(hints[name]) for name in names), default=0)
    if depth > limits.MAX_DEPTH:
        raise TypeError(f"{cls.__name__} nests deeper than MAX_DEPTH")
    declared_defaults = cls.__struct_defaults__
    defaults = tuple(
        (name, value)
        for name, value in zip(names[len(names) - len(declared_defaults) :], declared_defaults)
        if value is not msgspec.NODEFAULT
    )
    if not all(isinstance(value, (int, str, bytes, tuple, type(None))) for _, value in defaults):
        raise TypeError(f"{cls.__name__}: a wire default must be an immutable value (no factory)")
    namespace = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "__annotations__": wire_types,
    }
    meta: type = _DefaultsMeta if defaults else type(cls)
    wire_cls: Any = meta(cls.__name__, (cls,), namespace, **({} if tag is None else {"tag": tag}))
    if defaults:
        wire_cls._wire_defaults = defaults
    if tag is not None:
        wire_cls.TAG = tag
    wire_cls._wire_fields = tuple((name, hints[name]) for name in names)
    wire_cls._wire_depth = depth
    wire_cls._wire_check = _LazyCompiled(wire_cls, "_wire_check", lambda: _struct_check(wire_cls, hints, nested=True))
    wire_cls._wire_check_own = _LazyCompiled(wire_cls, "_wire_check_own", lambda: _struct_check(wire_cls, hints, nested=False))
    wire_cls._wire_spliced = _LazyCompiled(wire_cls, "_wire_spliced", lambda: _struct_spliced(wire_cls, hints))
    # dataclasses.replace / fields take wire structs, as when they were dataclasses
    wire_cls.__dataclass_fields__ = _LazyDataclassFields(cls.__name__, [(n, hints[n]) for n in names])
    _DECODERS[wire_cls] = msgspec.msgpack.Decoder(wire_cls)
    return wire_cls


@typing.dataclass_transform(frozen_default=True, kw_only_default=True)
def struct(cls: type[T]) -> type[T]:
    """Class decorator: make ``cls`` (a ``Struct`` subclass) a wire struct usable nested."""
    return _declare(cls, None)  # type: ignore[no-any-return]


@typing.dataclass_transform(frozen_default=True, kw_only_default=True)
def frame(tag: int) -> Callable[[type[T]], type[T]]:
    """Class decorator: register a top-level frame under ``tag``."""

    def wrap(cls: type[T]) -> type[T]:
        if tag in _REGISTRY:
            raise RuntimeError(f"frame tag {tag} registered twice")
        wire_cls = _declare(cls, tag)
        _REGISTRY[tag] = wire_cls
        return wire_cls  # type: ignore[no-any-return]

    return wrap


# Encoding --------------------------------------------------------------------------------


def _encode_checked(obj: Struct, *, nested_checked: bool = False) -> bytes:
    """Encode ``obj``, refusing what a decoder would reject: the bytes go through the same
    typed decoder and checks (field types, caps, check()s), then the frame cap. With
    ``nested_checked`` the nested structs' check()s are not run again (see encode_frame)."""
    cls = type(obj)
    what = cls.__name__
    try:
        data = _ENCODER.encode(obj)
    except (TypeError, ValueError, OverflowError) as exc:  # an int out of range, a lone surrogate, an object
        raise LocalProtocolError(f"cannot encode {what}: {type(exc).__name__}") from None
    if len(data) > limits.MAX_FRAME_BYTES:
        raise LocalProtocolError(f"{what} exceeds MAX_FRAME_BYTES")
    try:
        back = _DECODERS[cls].decode(data)
    except msgspec.DecodeError as exc:  # says where: "Push.items[3].envelope (Envelope): ..."
        raise LocalProtocolError(f"invalid {_described(cls, exc)}") from None
    try:
        if nested_checked or cls._wire_spliced(obj):  # their check()s ran when they were encoded (see encoded())
            cls._wire_check_own(back)
        else:
            cls._wire_check(back)
    except ValueError as exc:  # says which struct: "Push: Transit.envelope: ..."
        raise LocalProtocolError(f"invalid {what}: {exc}") from None
    return data


def encode_frame(obj: Frame, *, nested_checked: bool = False) -> bytes:
    """Serialise a frame; refuses values that the receiving side would reject.
    ``nested_checked``: every struct nested in ``obj`` came out of :func:`decode_frame` /
    :func:`decode_struct` (its check()s passed when this node took it in, and a wire struct is
    frozen: a mailbox's envelopes delivered), so only ``obj``'s own check() and the types and
    caps of all of it are checked again."""
    if not isinstance(obj, Frame) or _REGISTRY.get(getattr(obj, "TAG", -1)) is not type(obj):
        raise LocalProtocolError(f"not a registered frame: {type(obj).__name__}")
    return _encode_checked(obj, nested_checked=nested_checked)


def encode_struct(obj: Struct) -> bytes:
    """Serialise one nested struct on its own (e.g. to keep it in a store), checked like a
    frame: the result always decodes with :func:`decode_struct`."""
    if not isinstance(obj, Struct) or isinstance(obj, Frame) or type(obj) not in _DECODERS:
        raise LocalProtocolError(f"not a wire struct: {type(obj).__name__}")
    return _encode_checked(obj)


def encoded(cls: type[T], data: bytes) -> T:
    """``data``, the :func:`encode_struct` bytes of a ``cls`` value, to stand for that value
    in a frame to encode: written as it is, without a decode and re-encode (an outbox item
    spliced into a Push). Only for bytes this program encoded (their check()s ran then) and
    has decoded since: encoding a frame whose nested structs are all spliced checks their
    types and msgspec's caps again, not their check()s nor a str's UTF-8 byte cap (they held
    when the bytes were made). Nothing reads the value back as a ``cls``."""
    if cls not in _DECODERS or issubclass(cls, Frame):
        raise TypeError(f"not a wire struct: {cls!r}")
    return typing.cast(T, msgspec.Raw(data))


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
    """Decode one untyped msgpack value under every cap, or raise RemoteProtocolError."""
    value = _unpack(data, max_bytes)
    if not _depth_ok(value, 0):
        raise RemoteProtocolError(f"frame nesting exceeds {limits.MAX_DEPTH}")
    return value


def _check_size(data: Any, max_bytes: int = limits.MAX_FRAME_BYTES) -> None:
    if type(data) is not bytes:
        raise RemoteProtocolError("frame must be bytes")
    if len(data) > max_bytes:
        raise RemoteProtocolError(f"frame of {len(data)} bytes exceeds the {max_bytes}-byte cap")


def _unpack(data: bytes, max_bytes: int = limits.MAX_FRAME_BYTES) -> Any:
    """``unpackb`` without the nesting walk (the refusals of typed decoding use it to say what
    is wrong; a typed schema nests less than MAX_DEPTH anyway)."""
    _check_size(data, max_bytes)
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


_AT = re.compile(r"(.*) - at `\$((?:\[\d+\])*)`$", re.DOTALL)


def _described(cls: type[Struct], exc: Exception) -> str:
    """msgspec's refusal with its position (``$[2][0]``) said in the schema's names:
    ``SendBatch.envelopes[0] (Envelope): Expected `array` of length 7, got 0``."""
    match = _AT.fullmatch(str(exc))
    if match is None:
        return f"{cls.__name__}: {exc}"
    where, tp = cls.__name__, cls
    for index in map(int, re.findall(r"\d+", match.group(2))):
        tp = _optional_of(tp) or tp
        if isinstance(tp, type) and issubclass(tp, Struct):
            position = index - 1 if issubclass(tp, Frame) else index  # a frame's array starts with its tag
            if not 0 <= position < len(tp._wire_fields):
                where += " tag" if position < 0 else f"[{index}]"
                break
            name, tp = tp._wire_fields[position]
            where += f".{name}"
        elif _array_of(tp) is not None:
            where, tp = f"{where}[{index}]", _array_of(tp)
        else:
            break
    tp = _optional_of(tp) or tp
    if _is_nested_struct(tp):
        where += f" ({tp.__name__})"
    return f"{where}: {match.group(1)}"


def _frame_refusal(data: bytes, frames: FrameSet, exc: Exception) -> RemoteProtocolError:
    """Why msgspec refused ``data``: malformed or over a cap, no tag, an unknown tag or one of
    another endpoint (each raised as such), else the field msgspec names."""
    value = _unpack(data)
    if type(value) is not list or not value or type(value[0]) is not int:
        return RemoteProtocolError("frame must be an array starting with an integer tag")
    cls = frames.lookup(value[0])
    return RemoteProtocolError(f"invalid frame: {_described(cls, exc)}")


def decode_frame(data: bytes, frames: FrameSet = ANY_FRAME) -> Frame:
    """Decode and type-check one frame of ``frames`` (an endpoint's set; by default any
    registered frame, for tools and tests). Raises only RemoteProtocolError."""
    _check_size(data)
    decoder = frames.decoder()
    try:
        if decoder is None:
            raise msgspec.ValidationError("no frames")
        obj = decoder.decode(data)
    except Exception as exc:  # msgspec's DecodeError / ValidationError, or its RecursionError
        raise _frame_refusal(data, frames, exc) from None
    try:
        obj._wire_check(obj)
    except ValueError as exc:
        raise RemoteProtocolError(f"invalid frame: {exc}") from None
    return obj  # type: ignore[no-any-return]


def decode_stored(cls: type[T], data: bytes) -> T:
    """A ``cls`` from bytes this program made with :func:`encode_struct` and kept in its own
    store (an outbox item read back to push it): the typed decode with every msgspec cap, but
    not the check()s again (they passed when the bytes were made). Raises only
    RemoteProtocolError, as :func:`decode_struct` (a damaged database)."""
    return _decode_typed(cls, data)


def _decode_typed(cls: type[T], data: bytes) -> T:
    """``data`` as a ``cls``: its size, types and msgspec caps checked, not its check()s."""
    decoder = _DECODERS.get(cls)  # type: ignore[arg-type]
    if decoder is None or issubclass(cls, Frame):
        raise TypeError(f"not a wire struct: {cls!r}")
    _check_size(data)
    try:
        return decoder.decode(data)  # type: ignore[no-any-return]
    except Exception as exc:  # as in decode_frame
        _unpack(data)  # malformed or over a cap: that refusal
        raise RemoteProtocolError(f"invalid {_described(typing.cast(type[Struct], cls), exc)}") from None


def decode_struct(cls: type[T], data: bytes) -> T:
    """Decode and check one struct of type ``cls`` encoded by :func:`encode_struct`.
    Raises only RemoteProtocolError (a ``cls`` that is no wire struct is a TypeError)."""
    obj: Any = _decode_typed(cls, data)
    try:
        obj._wire_check(obj)
    except ValueError as exc:
        raise RemoteProtocolError(f"invalid {cls.__name__}: {exc}") from None
    return obj  # type: ignore[no-any-return]
