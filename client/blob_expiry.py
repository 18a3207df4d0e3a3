"""The blob of a file message goes from its node with the message (issue 17, round 3).

A file's ciphertext lies on its author's home node (node/blobs.py) until its retention. When the
message itself goes sooner the blob goes with it: a delete for everyone of one's own file message
deletes the blob at once, and a file message written while the conversation's timer is on has its
blob's expiry brought to the message's (``BlobExpire``; the node purges it then). The node takes
this from a device of the account that uploaded the blob only.

Both are asked before the message that makes them so goes out (as a timed message is noted for
erasure before it is sent): a send that fails leaves the blob going at that time anyway. A blob
on another node than this device's home node (the account moved) cannot be reached from here and
stays until its retention there; one the node no longer holds (expired, deleted) is no error.
"""

from __future__ import annotations

from sonet.core.attachment import FileRef
from sonet.core.blob_api import BlobExpire, BlobExpiry

from .connection import Connection, NodeError
from .replies import expect_reply

__all__ = ["expire_blob"]


async def expire_blob(conn: Connection, ref: FileRef, expires: int) -> int | None:
    """Have the home node (``conn``) delete ``ref``'s blob at ``expires`` (ms; 0: now). When it
    goes now (0: gone), or None when this node does not hold it (another node's, or gone)."""
    if ref.node != conn.welcome.node:
        return None
    try:
        reply = await conn.request(lambda n: BlobExpire(request=n, blob=ref.blob, expires=expires))
    except NodeError as exc:
        if exc.code == "blob_unknown":
            return None
        raise
    return expect_reply(reply, BlobExpiry).expires
