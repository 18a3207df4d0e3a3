"""Frames of the blob store on ``/client`` (attachments, issue 17 item 1; docs/protocol.md
"Attachments").

A blob is the ciphertext of one file (core/crypto/stream.py): the node never sees its key.
Upload: ``BlobCreate`` (its size and SHA-256; quota and size limit checked) answered by
``BlobCreated`` (a random 16-byte id), then ``BlobPut`` chunks at the offset the node holds,
each answered by ``BlobStored`` once it is on disk (fsynced). After a cut, ``BlobStatus`` asks
how much the node holds ("how much do you have") and the upload goes on from there. The last
chunk completes the blob: the node checks the SHA-256 of what it holds against the declared one.
Download: ``BlobGet`` from any offset, answered by ``BlobChunk`` (at most ``BLOB_CHUNK_BYTES``);
for a blob of another node the home node asks that node (federation) and passes the chunk on.
Deleting: ``BlobExpire`` from a device of the owner account brings a blob's expiry closer (a
disappearing message's time) or deletes it at once (a delete for everyone), answered by
``BlobExpiry``; the node purges it then, as it does at the end of its retention.
Every field is capped here; what a node takes per account is its own (node.toml ``[blobs]``).
"""

from __future__ import annotations

from .wire import Frame, frame

__all__ = [
    "BLOB_ID_LEN",
    "BLOB_CHUNK_BYTES",
    "MAX_BLOB_BYTES",
    "BlobCreate",
    "BlobCreated",
    "BlobPut",
    "BlobStored",
    "BlobStatus",
    "BlobGet",
    "BlobChunk",
    "BlobExpire",
    "BlobExpiry",
]

BLOB_ID_LEN = 16
#: bytes of one BlobPut or BlobChunk: well under the frame cap (core/limits.py MAX_FRAME_BYTES)
BLOB_CHUNK_BYTES = 1024 * 1024
#: the most any node may be configured to take in one blob (its default is smaller: node.toml)
MAX_BLOB_BYTES = 2**40
_DIGEST_LEN = 32


def _check_blob(blob: bytes) -> None:
    if len(blob) != BLOB_ID_LEN:
        raise ValueError(f"a blob id is {BLOB_ID_LEN} bytes")


def _check_size(size: int) -> None:
    if not 0 < size <= MAX_BLOB_BYTES:
        raise ValueError(f"a blob is 1..{MAX_BLOB_BYTES} bytes")


@frame(tag=110)
class BlobCreate(Frame):
    """A new blob of ``size`` bytes whose SHA-256 is ``sha256``."""

    request: int
    size: int
    sha256: bytes

    def check(self) -> None:
        _check_size(self.size)
        if len(self.sha256) != _DIGEST_LEN:
            raise ValueError("a SHA-256 digest is 32 bytes")


@frame(tag=111)
class BlobCreated(Frame):
    """``expires``: when the node deletes it (ms since the epoch; its retention period)."""

    request: int
    blob: bytes
    expires: int

    def check(self) -> None:
        _check_blob(self.blob)
        if not 0 <= self.expires < 2**63:
            raise ValueError("expires out of range")


@frame(tag=112)
class BlobPut(Frame):
    """``data`` at ``offset``, which must be what the node holds of the blob (append only)."""

    request: int
    blob: bytes
    offset: int
    data: bytes

    def check(self) -> None:
        _check_blob(self.blob)
        if not 0 <= self.offset < MAX_BLOB_BYTES:
            raise ValueError("offset out of range")
        if not 0 < len(self.data) <= BLOB_CHUNK_BYTES:
            raise ValueError(f"a blob chunk is 1..{BLOB_CHUNK_BYTES} bytes")


@frame(tag=113)
class BlobStored(Frame):
    """What the node holds of a blob, durably: ``stored`` of ``size`` bytes; ``complete`` once
    all are there and their digest matched."""

    request: int
    blob: bytes
    stored: int
    size: int
    complete: bool

    def check(self) -> None:
        _check_blob(self.blob)
        _check_size(self.size)
        if not 0 <= self.stored <= self.size:
            raise ValueError("stored out of range")


@frame(tag=114)
class BlobStatus(Frame):
    request: int
    blob: bytes

    def check(self) -> None:
        _check_blob(self.blob)


@frame(tag=115)
class BlobGet(Frame):
    """The bytes of blob ``blob`` of node ``node`` from ``offset`` on (a complete blob only).
    A device asks its home node, which fetches a blob of another node over the federation link
    (the same frame on ``/federation``, through relays too) and passes the chunk on."""

    request: int
    node: str
    blob: bytes
    offset: int

    def check(self) -> None:
        _check_blob(self.blob)
        if not 0 <= self.offset < MAX_BLOB_BYTES:
            raise ValueError("offset out of range")


@frame(tag=116)
class BlobChunk(Frame):
    """``data``: the blob's bytes at ``offset`` (1..BLOB_CHUNK_BYTES of them), of ``total``."""

    request: int
    blob: bytes
    offset: int
    total: int
    data: bytes

    def check(self) -> None:
        _check_blob(self.blob)
        _check_size(self.total)
        if not 0 < len(self.data) <= BLOB_CHUNK_BYTES:
            raise ValueError(f"a blob chunk is 1..{BLOB_CHUNK_BYTES} bytes")
        if not 0 <= self.offset or self.offset + len(self.data) > self.total:
            raise ValueError("a blob chunk lies within the blob")


@frame(tag=117)
class BlobExpire(Frame):
    """Blob ``blob`` of this account goes at ``expires`` (ms since the epoch; at once when that
    has passed, so 0 deletes it now). Only ever brings its expiry closer: a later time than the
    one it has changes nothing."""

    request: int
    blob: bytes
    expires: int

    def check(self) -> None:
        _check_blob(self.blob)
        if not 0 <= self.expires < 2**63:
            raise ValueError("expires out of range")


@frame(tag=118)
class BlobExpiry(Frame):
    """When blob ``blob`` goes now (ms since the epoch); 0: it is gone already."""

    request: int
    blob: bytes
    expires: int

    def check(self) -> None:
        _check_blob(self.blob)
        if not 0 <= self.expires < 2**63:
            raise ValueError("expires out of range")
