"""Kind ``deserialization``: a varint length header (RFC 9420 §2.1.2) decodes to ``length``,
takes the whole header, and ``length`` encodes back to the same bytes."""

from __future__ import annotations

from typing import Any

from ..codec import Reader, encode_varint
from .expect import expect_equal, hex_field

__all__ = ["check"]


def check(case: dict[str, Any]) -> None:
    header = hex_field(case, "vlbytes_header")
    r = Reader(header)
    expect_equal("decoded length", r.varint(), case["length"])
    r.done()
    expect_equal("encoded header", encode_varint(case["length"]), header)
