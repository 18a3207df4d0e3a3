"""``FetchGroupTree``: the ratchet tree a device added to a group joins with (docs/groups.md
"Trees by reference"; core/groups/trees.py).

A hub keeps the public tree of each epoch it issued a Welcome for (node/store/sqlite_group_trees.py)
and answers one chunk per request. A device asks its home node, which answers itself when it is
the hub named in the request and otherwise asks that hub over the federation (relays pass the
lookup on like the key lookups; ``Federation.remote_group_tree``). Answers count towards the
asking device's cost budget (node/cost_budget.py) by their size, like the other lookups.

Who may fetch: whoever names the group id (16 random bytes that members and participating nodes
know) and the epoch. The tree names the member devices, which the hub knows and which the
participating nodes see in the group's PublicMessage commits anyway; the device checks the tree
against its Welcome, so a hub that lies only makes the join fail.
"""

from __future__ import annotations

from dataclasses import replace

from sonet.core.address import validate_node_name
from sonet.core.client_api import ErrorFrame, FetchGroupTree, GroupTree
from sonet.core.errors import ProtocolError
from sonet.core.groups.trees import CHUNK_BYTES
from sonet.core.wire import Frame

from .client_checks import RequestError
from .client_context import ClientContext, Session, federation_errors, remote, require_registered
from .cost_budget import admit, charged
from .store import StoreError

__all__ = ["fetch_group_tree", "answer_group_tree"]


async def fetch_group_tree(session: Session, req: FetchGroupTree) -> None:
    ctx = session.ctx
    require_registered(session)
    admit(session)
    try:
        hub = validate_node_name(req.hub, remote=True)
    except ProtocolError as exc:
        raise RequestError("bad_input", str(exc)) from None
    if hub == ctx.name:
        answer: GroupTree = await _local(ctx, req)
    else:
        federation = remote(ctx, hub)
        with federation_errors():
            answer = await federation.remote_group_tree(hub, req.group, req.epoch, req.offset)
    await session.send(charged(session, replace(answer, request=req.request)))


async def answer_group_tree(ctx: ClientContext, req: FetchGroupTree) -> Frame:
    """The answer to a peer's FetchGroupTree for a group this node hosts (or an ErrorFrame)."""
    try:
        return await _local(ctx, req)
    except RequestError as exc:
        return ErrorFrame(request=req.request, code=exc.code, message=str(exc))


async def _local(ctx: ClientContext, req: FetchGroupTree) -> GroupTree:
    try:
        found = await ctx.store.group_tree(req.group, req.epoch, offset=req.offset, length=CHUNK_BYTES, now=ctx.clock_ms())
    except StoreError as exc:
        raise RequestError("unavailable", f"{ctx.name} cannot read its group trees right now: {exc}") from None
    if found is None:
        raise RequestError("no_group_tree", f"{ctx.name} keeps no ratchet tree of group {req.group.hex()} at epoch {req.epoch} from offset {req.offset}")
    total, chunk = found
    return GroupTree(request=req.request, group=req.group, epoch=req.epoch, offset=req.offset, total=total, chunk=chunk)
