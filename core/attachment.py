"""What a ``file`` message carries (core/content.py): where the encrypted file lies and how to
open and check it. ``FileRef`` is the strict form of the content's ``file`` map:

``{node, blob (16 bytes), key (32 bytes), sha256 (32: of the plaintext), sealed_sha256 (32: of
the ciphertext, which the node checks too), size (plaintext bytes), media_type, name}``, and
``voice_ms`` (1..``MAX_VOICE_MS``) only in a voice note: a recording to play, of that length;
``thumbnail`` (core/thumbnail.py: a small metadata-free JPEG the sender's device made) only
in an image's.

The key is the file's own (core/crypto/stream.py): it travels only inside the end-to-end
encrypted message, never to a node. ``name`` is a bare file name (no directory part, no control
characters, not ``.``/``..``): a receiver may write it into a folder as is. ``media_type`` is
``type/subtype`` in lower case, or empty when unknown.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from . import limits
from .address import validate_node_name
from .blob_api import BLOB_ID_LEN, MAX_BLOB_BYTES
from .crypto.stream import FILE_KEY_LEN, plain_size, sealed_size
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .thumbnail import Thumbnail, check_thumbnail_map

__all__ = ["FileRef", "MAX_FILE_NAME_BYTES", "MAX_MEDIA_TYPE_LEN", "MAX_VOICE_MS", "file_name_problem", "media_type_of"]

MAX_FILE_NAME_BYTES = 255  # what most file systems take
MAX_MEDIA_TYPE_LEN = 127
_DIGEST_LEN = 32
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_FIELDS: dict[str, type] = {
    "node": str, "blob": bytes, "key": bytes, "sha256": bytes, "sealed_sha256": bytes, "size": int, "media_type": str, "name": str,
}  # fmt: skip
MAX_VOICE_MS = limits.MAX_VOICE_MS
_VOICE = "voice_ms"
_THUMBNAIL = "thumbnail"
_OPTIONAL = {_VOICE, _THUMBNAIL}
_CANONICAL_ORDER = sorted([*_FIELDS, *_OPTIONAL], key=lambda k: (len(k.encode()), k.encode()))


def file_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a received file's name, or None."""
    if not name or len(name.encode()) > MAX_FILE_NAME_BYTES:
        return f"a file name is 1..{MAX_FILE_NAME_BYTES} bytes"
    if name in (".", "..") or "/" in name or "\\" in name:
        return "a file name has no directory part"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        return "a file name may not hold control or formatting characters"
    return None


def media_type_of(guess: str) -> str:
    """A guessed media type as a file message carries it: lower case, or "" when it is not one."""
    guess = guess.strip().lower()
    return guess if len(guess) <= MAX_MEDIA_TYPE_LEN and _MEDIA_TYPE.fullmatch(guess) else ""


@dataclass(frozen=True, kw_only=True, slots=True)
class FileRef:
    node: str
    blob: bytes
    key: bytes
    sha256: bytes
    sealed_sha256: bytes
    size: int
    media_type: str
    name: str
    #: a voice note's length (ms); None: any other file
    voice_ms: int | None = None
    #: an image's thumbnail (core/thumbnail.py); None: none was made
    thumbnail: Thumbnail | None = None

    def __repr__(self) -> str:  # never show the key
        voice = "" if self.voice_ms is None else f", voice_ms={self.voice_ms}"
        thumbnail = "" if self.thumbnail is None else f", {self.thumbnail!r}"
        return f"FileRef(node={self.node!r}, blob={self.blob.hex()}, size={self.size}, name={self.name!r}{voice}{thumbnail})"

    @property
    def sealed_size(self) -> int:
        """The size of the blob (the ciphertext)."""
        return sealed_size(self.size)

    def to_map(self) -> dict[str, Any]:
        # in canonical key order: the content's encoder writes nested maps as they are ordered
        value = {name: getattr(self, name) for name in _CANONICAL_ORDER if not (name in _OPTIONAL and getattr(self, name) is None)}
        if self.thumbnail is not None:
            value[_THUMBNAIL] = self.thumbnail.to_map()
        _check(value, LocalProtocolError)
        return value

    @classmethod
    def from_map(cls, value: Any, *, remote: bool = True) -> "FileRef":
        fields = _check(value, RemoteProtocolError if remote else LocalProtocolError)
        if _THUMBNAIL in fields:
            fields[_THUMBNAIL] = Thumbnail(**fields[_THUMBNAIL])
        return cls(**fields)


def _check(value: Any, err: type[ProtocolError]) -> dict[str, Any]:
    def fail(message: str) -> ProtocolError:
        return err(f"file: {message}", code="content_malformed" if err is RemoteProtocolError else None)

    if type(value) is not dict or value.keys() - _OPTIONAL != _FIELDS.keys():
        raise fail(f"a file map has exactly the fields {sorted(_FIELDS)} (and {_VOICE} in a voice note, {_THUMBNAIL} in an image's)")
    if _THUMBNAIL in value:
        try:
            check_thumbnail_map(value[_THUMBNAIL], err)
        except ProtocolError as exc:
            raise fail(str(exc)) from None
    if _VOICE in value and (type(value[_VOICE]) is not int or not 0 < value[_VOICE] <= MAX_VOICE_MS):
        raise fail(f"a voice note lasts 1..{MAX_VOICE_MS} ms")
    for key, tp in _FIELDS.items():
        if type(value[key]) is not tp:
            raise fail(f"field {key!r} must be {tp.__name__}")
    try:
        node = validate_node_name(value["node"], remote=True)
    except ProtocolError as exc:
        raise fail(str(exc)) from None
    if node != value["node"]:
        raise fail("node name is not in normal form")
    if len(value["blob"]) != BLOB_ID_LEN:
        raise fail(f"a blob id is {BLOB_ID_LEN} bytes")
    if len(value["key"]) != FILE_KEY_LEN:
        raise fail(f"a file key is {FILE_KEY_LEN} bytes")
    if len(value["sha256"]) != _DIGEST_LEN or len(value["sealed_sha256"]) != _DIGEST_LEN:
        raise fail("a SHA-256 digest is 32 bytes")
    size = value["size"]
    if not 0 <= size < 2**63 or sealed_size(size) > MAX_BLOB_BYTES or plain_size(sealed_size(size)) != size:
        raise fail("size out of range")
    media_type = value["media_type"]
    if media_type and (len(media_type) > MAX_MEDIA_TYPE_LEN or not _MEDIA_TYPE.fullmatch(media_type)):
        raise fail("media_type is type/subtype in lower case")
    problem = file_name_problem(value["name"])
    if problem is not None:
        raise fail(problem)
    return dict(value)
