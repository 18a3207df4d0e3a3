"""The blob store's requests on ``/client`` (core/blob_api.py; the store: node/blobs.py).

Every one needs a registered device. Uploads are the account's own; downloads take any blob
by its id: one of this node from its store, one of another node through the federation
(``ClientFederation.remote_blob``: that node answers, through relays too) passed on chunk by
chunk, never kept here. Those fetches are not charged to the device's budget of lookups at
other nodes (a 100 MB file is a hundred of them) but to its budget of bytes fetched from other
nodes (``ClientLimits.admit_blob`` / ``settle_blob``: a device cannot spend what
the other node grants this whole node per peer); the other node bounds what it answers per peer
too. Chunks of this node's own blobs come out of a byte budget of their own (``local=True``):
each is read and sealed for the device's channel, and nothing else bounded how often. ``BlobExpire`` brings an own blob's expiry closer or deletes it (node/blobs.py
``expire``). ``answer_blob`` answers a peer's ``BlobGet``. A node without a blob store (``ClientContext.blobs`` None) refuses them as
``unexpected_frame``.
"""

from __future__ import annotations

from dataclasses import replace

from sonet.core.address import validate_node_name
from sonet.core.blob_api import BlobChunk, BlobCreate, BlobCreated, BlobExpire, BlobExpiry, BlobGet, BlobPut, BlobStatus, BlobStored
from sonet.core.client_api import ErrorFrame
from sonet.core.errors import ProtocolError, RemoteProtocolError
from sonet.core.wire import Frame
from sonet.federation.lookup_charge import charging_lookups

from .blobs import BlobInfo, BlobStore
from .client_checks import RequestError
from .client_context import ClientContext, Session, federation_errors, remote, require_registered

__all__ = ["blob_create", "blob_put", "blob_status", "blob_expire", "blob_get", "answer_blob"]


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
    ctx = session.ctx
    try:
        node = validate_node_name(req.node, remote=True)
    except ProtocolError as exc:
        raise RequestError("bad_address", str(exc)) from None
    local = node == ctx.name
    federation = None if local else remote(ctx, node)  # unknown_node when this node does not federate
    limits = ctx.limits
    if limits is not None:
        limits.admit_blob(session, local=local)
    fetched = 0
    try:
        if federation is None:
            answer = await _local_chunk(ctx, req)
        else:
            with federation_errors(), charging_lookups(None):
                answer = replace(await federation.remote_blob(node, req.blob, req.offset), request=req.request)
        fetched = len(answer.data)
    finally:
        if limits is not None:  # what the chunk did not use (all of it when it failed) goes back
            limits.settle_blob(session, fetched, local=local)
    await session.send(answer)


async def blob_expire(session: Session, req: BlobExpire) -> None:
    account, _device = require_registered(session)
    expires = await _store(session).expire(account, req.blob, req.expires, now=session.ctx.clock_ms())
    await session.send(BlobExpiry(request=req.request, blob=req.blob, expires=expires))


async def _local_chunk(ctx: ClientContext, req: BlobGet) -> BlobChunk:
    if ctx.blobs is None:
        raise RequestError("blob_unknown", f"{ctx.name} keeps no attachments")
    info, data = await ctx.blobs.read(req.blob, req.offset)
    return BlobChunk(request=req.request, blob=req.blob, offset=req.offset, total=info.size, data=data)


async def answer_blob(ctx: ClientContext, req: BlobGet) -> Frame:
    """The answer to a peer's BlobGet for a blob of this node (or an ErrorFrame)."""
    try:
        return await _local_chunk(ctx, req)
    except RequestError as exc:
        return ErrorFrame(request=req.request, code=exc.code, message=f"{ctx.name}: {exc}")
