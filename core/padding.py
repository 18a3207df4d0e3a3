"""Length padding: what a body's size may reveal about its length.

A sealed box (core/sealed_sender.py) is the only part of a message that nodes see; without
padding its size grows byte for byte with the text, so every node on the way learns each
message's length. Its plaintext is padded before encryption, ISO/IEC 7816-4 style as Signal
pads its message bodies: ``data || 0x80 || 0x00 ...`` up to ``padded_size(len(data) + 1)``.

``padded_size`` takes Signal's 160-byte buckets for short bodies and Padmé (Nikitin et al.,
"Reducing Metadata Leakage from Encrypted Files and Communication with PURBs", 2019) for long
ones: a size of L bytes is rounded up so that only its top ~log2(log2 L) bits remain, which
costs at most ~12 % and leaks O(log log L) bits. Short texts (the common case) in one 160-byte
bucket all give the same size; long ones the same within a few per cent.

Unpadding is strict: the marker, only zeros after it, and exactly the padded size of what it
ends, so that a body has one padded form.
"""

from __future__ import annotations

from .errors import RemoteProtocolError

__all__ = ["BLOCK", "padded_size", "pad", "unpad"]

#: Signal's bucket for message bodies: sizes are multiples of it
BLOCK = 160
_MARKER = b"\x80"


def _padme(length: int) -> int:
    """Padmé: ``length`` rounded up to keep only its top floor(log2(log2 L)) + 1 bits."""
    if length < 2:
        return length
    exponent = length.bit_length() - 1  # floor(log2 L)
    significant = exponent.bit_length()  # floor(log2 E) + 1
    mask = (1 << (exponent - significant)) - 1
    return (length + mask) & ~mask


def padded_size(length: int) -> int:
    """The size a body of ``length`` bytes (marker included) is padded to: a multiple of
    ``BLOCK`` at least Padmé(``length``)."""
    if length < 0:
        raise ValueError("a length is not negative")
    return max(BLOCK, -(-_padme(length) // BLOCK) * BLOCK)


def pad(data: bytes) -> bytes:
    """``data`` followed by the marker and zeros up to ``padded_size``."""
    unpadded = len(data) + 1
    return data + _MARKER + bytes(padded_size(unpadded) - unpadded)


def unpad(padded: bytes) -> bytes:
    """What ``pad`` padded: RemoteProtocolError unless ``padded`` is exactly ``pad`` of it."""
    data = padded.rstrip(b"\x00")
    if not data.endswith(_MARKER):
        raise RemoteProtocolError("padding has no end marker")
    data = data[:-1]
    if len(padded) != padded_size(len(data) + 1):
        raise RemoteProtocolError(f"padding is {len(padded)} bytes long, not {padded_size(len(data) + 1)}")
    return data
