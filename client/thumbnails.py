"""An image file's thumbnail, made on the sending device (core/thumbnail.py says what a file
message carries), and checked again by a device that saves one it received.

Making one never fails a send: any problem (not an image, a truncated or malformed one, one of
more than ``MAX_SOURCE_PIXELS`` — a decompression bomb — or a thumbnail that stays above the
byte cap) means no thumbnail, and the file goes without one. The image is decoded only after
its header says its size is within the cap (JPEGs are decoded at a reduced scale when they
can be), turned upright by its EXIF orientation, scaled to fit 256x256 and re-encoded as a JPEG
built from the pixels alone: no EXIF (so no GPS position, camera or time), no ICC profile,
comment or XMP of the original goes with it.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from sonet.core.thumbnail import MAX_THUMBNAIL_BYTES, MAX_THUMBNAIL_SIDE, Thumbnail

__all__ = ["make_thumbnail", "thumbnail_problem", "MAX_SOURCE_PIXELS", "SOURCE_FORMATS"]

#: the largest image (width x height) a thumbnail is made of: a photo of a 50-megapixel camera
MAX_SOURCE_PIXELS = 50_000_000
#: the image formats a thumbnail is made of (Pillow's names); others are sent without one
SOURCE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
#: JPEG qualities tried in turn until the thumbnail fits MAX_THUMBNAIL_BYTES
_QUALITIES = (75, 60, 45, 30)


def make_thumbnail(path: Path) -> Thumbnail | None:
    """A thumbnail of the image at ``path``, or None (not an image, too large, damaged)."""
    try:
        from PIL import Image, ImageOps
    except ImportError:  # Pillow is a dependency; a device without it sends files without thumbnails
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=SOURCE_FORMATS) as im:
                width, height = im.size
                if not 0 < width * height <= MAX_SOURCE_PIXELS:
                    return None
                im.draft("RGB", (MAX_THUMBNAIL_SIDE * 2, MAX_THUMBNAIL_SIDE * 2))  # JPEG: decode at 1/2..1/8 scale
                upright = ImageOps.exif_transpose(im)  # loads the pixels; a truncated image fails here
                upright.thumbnail((MAX_THUMBNAIL_SIDE, MAX_THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
                rgb = _on_white(upright)
        # only the pixels go on: a new image has no info (EXIF, ICC profile, comment, XMP) to write
        clean = Image.frombytes("RGB", rgb.size, rgb.tobytes())
        for quality in _QUALITIES:
            out = io.BytesIO()
            clean.save(out, format="JPEG", quality=quality, optimize=True)
            if len(out.getvalue()) <= MAX_THUMBNAIL_BYTES:
                return Thumbnail(data=out.getvalue(), width=clean.width, height=clean.height)
        return None
    except Exception:  # noqa: BLE001 - whatever a hostile or broken image does, the file still goes
        return None


def _on_white(im):  # noqa: ANN001, ANN202 - PIL images (Pillow is imported lazily)
    """RGB pixels of ``im``; transparent parts on white (not the black convert() would give)."""
    from PIL import Image

    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return im.convert("RGB")


def thumbnail_problem(thumbnail: Thumbnail) -> str | None:
    """Why a received thumbnail is not the JPEG of its stated size it claims to be, or None."""
    try:
        from PIL import Image
    except ImportError:
        return "Pillow is not installed: the thumbnail cannot be checked"
    try:
        with Image.open(io.BytesIO(thumbnail.data), formats=("JPEG",)) as im:
            if im.size != (thumbnail.width, thumbnail.height):
                return f"the thumbnail is {im.size[0]}x{im.size[1]}, not {thumbnail.width}x{thumbnail.height} as its message says"
            im.load()  # a truncated or malformed one fails here
    except Exception:  # noqa: BLE001 - a forged thumbnail: refused, whatever it is
        return "the thumbnail is not a valid JPEG"
    return None
