"""The TLS presentation-language codec of RFC 9420 (§2.1): ``Reader``/``Writer`` for uintN,
varint-prefixed ``opaque<V>`` and ``T<V>`` vectors and ``optional<T>``, ``decode_all`` for a
whole buffer, and the ``Encodable`` base of every MLS structure. Malformed input raises
``DecodeError`` (code ``mls_malformed``); sizes are capped by ``MLS_MAX_MESSAGE_BYTES``."""

from .encodable import Encodable
from .errors import DecodeError
from .reader import Reader, decode_all
from .varint import VARINT_MAX, encode_varint
from .writer import Writer

__all__ = ["DecodeError", "Encodable", "Reader", "VARINT_MAX", "Writer", "decode_all", "encode_varint"]
