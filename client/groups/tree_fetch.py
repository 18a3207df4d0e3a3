"""Fetching the ratchet tree a Welcome goes without (docs/groups.md "Trees by reference";
core/groups/trees.py).

Before the engine takes an ORDERED item whose Welcome names one of this device's KeyPackages,
``prefetch_tree`` opens the Welcome's GroupInfo (the device's own KeyPackage keys decrypt it:
one HPKE decapsulation) to learn the epoch it joins and whether the tree is carried. When it is
not, the device fetches the tree of that epoch from the hub that ordered the item
(``FetchGroupTree`` through its home node, chunk by chunk) and hands it to the engine
(``GroupEngine.trees``, by the item's ref), whose ``Group.join`` checks it against the GroupInfo
(signature, tree hash, parent hashes): a hub that sends another tree only makes the join fail.

A node's refusal (e.g. ``unreachable``) is raised as its NodeError; the caller keeps the item in
the mailbox when the refusal is for now (TRANSIENT_LOOKUP_CODES), so the next receive tries
again. A Welcome this device cannot open is left to the engine, which reports it.
"""

from __future__ import annotations

from sonet.core.client_api import FetchGroupTree, GroupTree
from sonet.core.envelope import Envelope
from sonet.core.errors import ProtocolError
from sonet.core.groups.items import GroupItem, ItemKind
from sonet.core.groups.trees import TreeDownload
from sonet.core.mls.extensions import ExtensionType, find_extension
from sonet.core.mls.framing import MLSMessage
from sonet.core.mls.key_schedule.epoch_secrets import welcome_secret
from sonet.core.mls.messages import Welcome
from sonet.core.mls.messages.welcome import decrypt_group_info, decrypt_group_secrets
from sonet.core.wire import decode_struct

from ..connection import Connection
from ..replies import expect_reply
from ..state import DeviceState
from .engine import GroupEngine
from .keys import SUITE, OwnKeyPackage

__all__ = ["prefetch_tree", "tree_to_fetch", "fetch_tree"]


async def prefetch_tree(conn: Connection, state: DeviceState, engine: GroupEngine, envelope: Envelope) -> None:
    """Fetch the tree ``envelope``'s Welcome needs (if it is for this device and goes without
    one) into ``engine.trees``."""
    wanted = tree_to_fetch(state, envelope)
    if wanted is not None and envelope.id not in engine.trees:
        hub, group, epoch = wanted
        engine.trees[envelope.id] = await fetch_tree(conn, hub=hub, group=group, epoch=epoch)


def tree_to_fetch(state: DeviceState, envelope: Envelope) -> tuple[str, bytes, int] | None:
    """(hub, group, epoch) of the tree a Welcome for this device in ``envelope`` needs; None for
    anything else (not an ORDERED item with a Welcome, not for this device, carrying its tree,
    or not opening: the engine refuses those)."""
    try:
        item = decode_struct(GroupItem, envelope.body)
        if item.kind != ItemKind.ORDERED or not item.welcome:
            return None
        welcome = MLSMessage.from_bytes(item.welcome).body
        if not isinstance(welcome, Welcome):
            return None
        for secrets in welcome.secrets:
            found = state.key_package_secret(secrets.new_member)
            if found is None:
                continue
            own = OwnKeyPackage.from_bytes(found[0])
            group_secrets = decrypt_group_secrets(SUITE, welcome, secrets.new_member, own.init_priv)
            if group_secrets.psks:
                return None  # Sonet Welcomes carry no PSKs: the engine refuses it
            info = decrypt_group_info(SUITE, welcome_secret(SUITE, group_secrets.joiner_secret, None), welcome.encrypted_group_info)
            if find_extension(info.extensions, ExtensionType.RATCHET_TREE) is not None:
                return None
            return item.hub, item.group, info.group_context.epoch
    except ProtocolError:
        return None
    return None


async def fetch_tree(conn: Connection, *, hub: str, group: bytes, epoch: int) -> bytes:
    """The whole tree ``hub`` keeps for ``group`` at ``epoch``, asked chunk by chunk (unchecked:
    ``Group.join`` checks it against the Welcome). NodeError for a refusal, RemoteProtocolError
    for an answer that is not the part asked for."""
    download = TreeDownload(group, epoch)
    while not download.done:
        offset = download.offset
        reply = await conn.request(lambda n: FetchGroupTree(request=n, group=group, hub=hub, epoch=epoch, offset=offset))
        download.add(expect_reply(reply, GroupTree))
    return download.tree()
