"""The blob store's requests on ``/client`` (core/blob_api.py; the store: node/blobs.py).

Every one needs a registered device. Uploads are the account's own; downloads take any blob
of this node by its id. A node without a blob store (``ClientContext.blobs`` None) refuses them
as ``unexpected_frame``.
"""

from __future__ import annotations

from sonet.core.blob_api import BlobChunk, BlobCreate, BlobCreated, BlobGet, BlobPut, BlobStatus, BlobStored
from sonet.core.errors import RemoteProtocolError

from .blobs import BlobInfo, BlobStore
from .client_context import Session, require_registered

__all__ = ["blob_create", "blob_put", "blob_status", "blob_get"]


def _store(session: Session) -> BlobStore:
    store = session.ctx.blobs
    if store is None:
        raise RemoteProtocolError("this node keeps no attachments", code="unexpected_frame")
    return store


def _stored(request: int, info: BlobInfo) -> BlobStored:
    return BlobStored(request=request, blob=info.id, stored=info.stored, size=info.size, complete=info.complete)


async def blob_create(session: Session, req: BlobCreate) -> None:
    account, _device = require_registered(session)
    info = await _store(session).create(account, req.size, req.sha256, now=session.ctx.clock_ms())
    await session.send(BlobCreated(request=req.request, blob=info.id, expires=info.expires))


async def blob_put(session: Session, req: BlobPut) -> None:
    account, _device = require_registered(session)
    info = await _store(session).put(account, req.blob, req.offset, req.data)
    await session.send(_stored(req.request, info))


async def blob_status(session: Session, req: BlobStatus) -> None:
    account, _device = require_registered(session)
    await session.send(_stored(req.request, _store(session).owned(account, req.blob)))


async def blob_get(session: Session, req: BlobGet) -> None:
    require_registered(session)
    info, data = await _store(session).read(req.blob, req.offset)
    await session.send(BlobChunk(request=req.request, blob=req.blob, offset=req.offset, total=info.size, data=data))
