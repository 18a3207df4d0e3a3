"""An image file's thumbnail inside its ``file`` message (core/attachment.py ``FileRef``): a small
JPEG the SENDING device made (client/thumbnails.py: orientation applied, metadata stripped), so a
recipient can show the picture before downloading the file. It travels only inside the
end-to-end-encrypted content; nodes never see it.

``{data: bytes (a JPEG: 1..MAX_THUMBNAIL_BYTES, starting with the JPEG SOI marker), width,
height (1..MAX_THUMBNAIL_SIDE pixels)}``. Pure: what the bytes decode to is checked by the device
that saves them (client/thumbnails.py), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = ["Thumbnail", "MAX_THUMBNAIL_BYTES", "MAX_THUMBNAIL_SIDE"]

#: the largest thumbnail a file message carries (bytes of JPEG)
MAX_THUMBNAIL_BYTES = 24 * 1024
#: its longest side (pixels)
MAX_THUMBNAIL_SIDE = 256
_JPEG_SOI = b"\xff\xd8\xff"
# canonical CBOR key order (length, then bytes): nested maps are written as they are ordered
_ORDER = ("data", "width", "height")


@dataclass(frozen=True, kw_only=True, slots=True)
class Thumbnail:
    data: bytes
    width: int
    height: int

    def __repr__(self) -> str:
        return f"Thumbnail({self.width}x{self.height}, {len(self.data)} bytes)"

    def to_map(self) -> dict[str, Any]:
        value = {name: getattr(self, name) for name in _ORDER}
        check_thumbnail_map(value, LocalProtocolError)
        return value

    @classmethod
    def from_map(cls, value: Any, *, remote: bool = True) -> "Thumbnail":
        return cls(**check_thumbnail_map(value, RemoteProtocolError if remote else LocalProtocolError))


def check_thumbnail_map(value: Any, err: type[ProtocolError]) -> dict[str, Any]:
    def fail(message: str) -> ProtocolError:
        return err(f"thumbnail: {message}", code="content_malformed" if err is RemoteProtocolError else None)

    if type(value) is not dict or value.keys() != set(_ORDER):
        raise fail(f"a thumbnail map has exactly the fields {list(_ORDER)}")
    data, width, height = value["data"], value["width"], value["height"]
    if type(data) is not bytes or type(width) is not int or type(height) is not int:
        raise fail("data is bytes, width and height are ints")
    if not 0 < len(data) <= MAX_THUMBNAIL_BYTES:
        raise fail(f"a thumbnail is 1..{MAX_THUMBNAIL_BYTES} bytes")
    if not data.startswith(_JPEG_SOI):
        raise fail("a thumbnail is a JPEG")
    if not (0 < width <= MAX_THUMBNAIL_SIDE and 0 < height <= MAX_THUMBNAIL_SIDE):
        raise fail(f"a thumbnail's sides are 1..{MAX_THUMBNAIL_SIDE} pixels")
    return dict(value)
