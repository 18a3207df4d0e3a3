"""What a fuzz target is, and the one property every target checks.

A target wraps one decoder reachable from the network: it takes one input (bytes), runs the
decoder on it and returns what the decoder made of it, or None when the decoder refused it
with an error its documentation names. Anything else is a finding and propagates: another
exception class, a documented class with an undocumented code, or a result that is not the
well-formed object the decoder promises. The hypothesis tests (tests/fuzz) and the atheris
harness (``python -m fuzz``) call the same targets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from sonet.core import limits

__all__ = ["Target", "Finding", "Unusable", "Codec", "register", "TARGETS", "unpack_args"]

#: how a seed is parsed for structure-aware mutations (field swaps, typed replacements)
Codec = Literal["msgpack", "cbor", "bytes"]


class Finding(AssertionError):
    """The decoder broke its contract on this input."""


class Unusable(Exception):
    """The input does not have the shape this target feeds its decoder (e.g. a target taking
    several arguments got bytes that do not unpack into them): not the decoder's business."""


@dataclass(frozen=True, kw_only=True)
class Target:
    name: str
    summary: str
    #: runs the decoder on one input; returns what it decoded
    decode: Callable[[bytes], Any]
    #: the exception classes the decoder documents for bad input
    errors: tuple[type[BaseException], ...]
    #: the error codes it documents (``ProtocolError.code``), when it names them
    codes: frozenset[str] | None = None
    #: what a successful decode returns
    returns: type | tuple[type, ...] = object
    #: valid encodings to start from (mutations, the atheris corpus)
    seeds: Callable[[], Iterable[bytes]]
    codec: Codec = "bytes"
    _corpus: list[bytes] = field(default_factory=list, compare=False, repr=False)

    def corpus(self) -> list[bytes]:
        """The seeds, built once."""
        if not self._corpus:
            self._corpus.extend(self.seeds())
        return self._corpus

    def __call__(self, data: bytes) -> Any:
        try:
            result = self.decode(data)
        except Unusable:
            return None
        except self.errors as exc:
            code = getattr(exc, "code", None)
            if self.codes is not None and code not in self.codes:
                raise Finding(f"{self.name}: undocumented error code {code!r}: {exc}") from exc
            return None
        if not isinstance(result, self.returns):
            raise Finding(f"{self.name}: decoded into {type(result).__name__}, expected {self.returns}")
        return result


TARGETS: dict[str, Target] = {}


def register(target: Target) -> Target:
    if target.name in TARGETS:
        raise RuntimeError(f"fuzz target {target.name} defined twice")
    TARGETS[target.name] = target
    return target


def unpack_args(data: bytes, *types_: type | tuple[type, ...]) -> list[Any]:
    """A msgpack array of exactly these argument types (bool is not int), or Unusable.
    ``(list, bytes)`` stands for a list of bytes. Caps as for frames."""
    try:
        value = msgpack.unpackb(data, raw=False, max_bin_len=limits.MAX_BIN_LEN, max_array_len=limits.MAX_ARRAY_LEN)
    except Exception:  # msgpack raises many types; none of them concerns the decoder
        raise Unusable() from None
    if type(value) is not list or len(value) != len(types_):
        raise Unusable()
    for item, tp in zip(value, types_):
        if isinstance(tp, tuple):
            if type(item) is not list or any(type(x) is not tp[1] for x in item):
                raise Unusable()
        elif type(item) is not tp:
            raise Unusable()
    return value
