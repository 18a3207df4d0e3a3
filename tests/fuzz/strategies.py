"""Hypothesis strategies that feed the fuzz targets (fuzz/targets.py).

``random_inputs(target)``: random bytes, random msgpack-ish or CBOR-ish structures, and random
values in the shape of a valid encoding (its containers kept, every leaf replaced), so that
structure checks are passed and the field checks behind them are reached.

``mutated_inputs(target)``: one to four mutations of a valid encoding: byte level (bit flips,
overwritten bytes, truncation, extension, insertion, deletion, repetition) and, for the
targets whose seeds are msgpack or CBOR, structure level (field swaps, deletions,
duplications, boundary values, type changes, random replacement), descending into CBOR held in
byte strings (the bodies of signed objects).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
import msgpack
from hypothesis import strategies as st

from sonet.core import canonical
from sonet.core.errors import RemoteProtocolError
from fuzz.target import Codec, Target

__all__ = ["random_inputs", "mutated_inputs", "plain"]

# Plain values ------------------------------------------------------------------------------

_MSGPACK_INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_CBOR_INTS = st.integers(min_value=-(2**70), max_value=2**70)  # beyond 64 bits: bignum tags
_BOUNDARY_INTS = [0, 1, -1, 2, 255, 256, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]


@functools.cache
def _leaves(codec: Codec) -> st.SearchStrategy[Any]:
    ints = _MSGPACK_INTS if codec == "msgpack" else _CBOR_INTS
    base = st.none() | st.booleans() | ints | st.sampled_from(_BOUNDARY_INTS) | st.text(max_size=24) | st.binary(max_size=48)
    return base | st.floats(allow_nan=True) if codec == "msgpack" else base


def plain(codec: Codec) -> st.SearchStrategy[Any]:
    return st.recursive(
        _leaves(codec),
        lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
        max_leaves=16,
    )


# Encodings -----------------------------------------------------------------------------------


@dataclass
class Nested:
    """A byte string that holds canonical CBOR (a signed body): mutated as a structure."""

    tree: Any


def _encode(codec: Codec, tree: Any) -> bytes:
    def lower(value: Any) -> Any:
        if isinstance(value, Nested):
            return _dumps_cbor(lower(value.tree))
        if type(value) is list:
            return [lower(v) for v in value]
        if type(value) is dict:
            return {k: lower(v) for k, v in value.items()}
        return value

    tree = lower(tree)
    return msgpack.packb(tree, use_bin_type=True) if codec == "msgpack" else _dumps_cbor(tree)


def _dumps_cbor(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


def _decode(codec: Codec, data: bytes) -> Any:
    def lift(value: Any) -> Any:
        if type(value) is bytes and value[:1] and value[0] >> 5 in (4, 5):  # a CBOR array or map
            try:
                return Nested(lift(canonical.loads(value)))
            except RemoteProtocolError:
                return value
        if type(value) is list:
            return [lift(v) for v in value]
        if type(value) is dict:
            return {k: lift(v) for k, v in value.items()}
        return value

    return lift(msgpack.unpackb(data, raw=False, strict_map_key=False) if codec == "msgpack" else canonical.loads(data))


def _encodable(codec: Codec, value: Any) -> bytes | None:
    try:
        return _encode(codec, value)
    except (TypeError, ValueError, OverflowError, cbor2.CBOREncodeError):
        return None


# Random inputs -------------------------------------------------------------------------------


def _shaped(codec: Codec, tree: Any) -> st.SearchStrategy[Any]:
    """The containers of ``tree`` with every leaf either kept or drawn at random."""
    if isinstance(tree, Nested):
        return _shaped(codec, tree.tree).map(Nested)
    if type(tree) is list:
        return st.tuples(*[_shaped(codec, v) for v in tree]).map(list)
    if type(tree) is dict:
        return st.fixed_dictionaries({k: _shaped(codec, v) for k, v in tree.items()})
    return st.just(tree) | _leaves(codec)


def random_inputs(target: Target) -> st.SearchStrategy[bytes]:
    raw = st.binary(max_size=512)
    if target.codec == "bytes":
        return raw
    codec = target.codec
    # each seed's strategy built once, when first drawn: built anew for every example, its
    # whole tree was validated again by hypothesis each time, most of the run's time
    shaped = functools.cache(lambda seed: _shaped(codec, _decode(codec, seed)))
    structured = plain(codec) | st.sampled_from(target.corpus()).flatmap(shaped)
    return raw | structured.map(lambda v: _encodable(codec, v)).filter(lambda b: b is not None)  # type: ignore[return-value]


# Mutations -----------------------------------------------------------------------------------

Draw = Callable[[st.SearchStrategy[Any]], Any]


def _bytes_op(draw: Draw, data: bytes) -> bytes:
    n = len(data)
    at = draw(st.integers(0, max(n - 1, 0)))
    op = draw(st.sampled_from(["flip", "set", "truncate", "extend", "insert", "delete", "repeat"]))
    if op == "flip" and n:
        return data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1 :]
    if op == "set" and n:
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    if op == "truncate":
        return data[:at]
    if op == "extend":
        return data + draw(st.binary(min_size=1, max_size=64))
    if op == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if op == "delete":
        return data[:at] + data[at + draw(st.integers(1, 16)) :]
    return data[:at] + data[at : at + draw(st.integers(1, 64))] * draw(st.integers(2, 4)) + data[at:]


def _children(node: Any) -> list[tuple[Any, Any]]:
    """(container, key) of each child; a Nested node is seen through."""
    if isinstance(node, Nested):
        return _children(node.tree)
    if type(node) is list:
        return [(node, i) for i in range(len(node))]
    if type(node) is dict:
        return [(node, k) for k in node]
    return []


def _positions(tree: Any) -> list[tuple[Any, Any]]:
    found, todo = [], _children(tree)
    while todo:
        parent, key = todo.pop()
        found.append((parent, key))
        todo.extend(_children(parent[key]))
    return found


def _variant(draw: Draw, codec: Codec, value: Any) -> Any:
    """A value near ``value`` (boundary, resized, retyped) or a random one."""
    if isinstance(value, Nested):
        value = _encode("cbor", value.tree)
    options: list[Any] = [draw(_leaves(codec)), None]
    if type(value) is int:
        options += [draw(st.sampled_from(_BOUNDARY_INTS)), value + 1, value - 1, -value, str(value), value != 0]
    elif type(value) is bytes:
        options += [value[:-1], value + b"\x00", b"", value * 2, bytes(len(value)), value.hex()]
    elif type(value) is str:
        options += ["", value.upper(), value + "\u00e9", value * 40, " " + value, value.encode()]
    elif type(value) is bool:
        options += [int(value), not value]
    elif type(value) is list:
        options += [[], value[::-1], value + value[-1:], {str(i): v for i, v in enumerate(value)}]
    elif type(value) is dict:
        options += [{}, list(value.values()), {**value, "extra": 1}]
    return draw(st.sampled_from(options))


def _tree_op(draw: Draw, codec: Codec, data: bytes) -> bytes:
    try:
        tree = _decode(codec, data)
    except Exception:  # an earlier byte mutation broke the encoding
        return _bytes_op(draw, data)
    positions = _positions(tree)
    if not positions:
        return _encodable(codec, _variant(draw, codec, tree)) or data
    parent, key = draw(st.sampled_from(positions))
    op = draw(st.sampled_from(["replace", "swap", "delete", "duplicate"]))
    siblings = list(range(len(parent))) if type(parent) is list else list(parent)
    if op == "swap" and len(siblings) > 1:
        other = draw(st.sampled_from(siblings))
        parent[key], parent[other] = parent[other], parent[key]
    elif op == "delete":
        del parent[key]
    elif op == "duplicate" and type(parent) is list:
        parent.insert(key, parent[key])
    else:
        parent[key] = _variant(draw, codec, parent[key])
    return _encodable(codec, tree) or data


@st.composite
def _mutated(draw: Draw, target: Target, seeds: list[bytes]) -> bytes:
    data = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        structural = target.codec != "bytes" and draw(st.booleans())
        data = _tree_op(draw, target.codec, data) if structural else _bytes_op(draw, data)
    return data


def mutated_inputs(target: Target, seeds: list[bytes] | None = None) -> st.SearchStrategy[bytes]:
    """Mutations of ``seeds`` (default: the target's whole corpus)."""
    return _mutated(target, seeds or target.corpus())
