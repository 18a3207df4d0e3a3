"""The running node's side of operator administration (node/admin.py).

``sonet-node accounts disable|remove`` and ``sonet-node peer add|remove`` run in another process
and write only the database, the node's one truth. Each of those bumps the store's
``admin_version``; this loop reads that counter every ``POLL_S`` (one small read) and, when it
moved, has federation read the peer table again (its pushes go by the table it read last:
federation/service.py) and asks the store about every device with a live connection: one whose
device is gone (removed with its account) or whose account is disabled has its connections told
to close, and the key directory signs a head covering the tombstone leaf of a removal; the
session asks the store which of the two it was (node/client_session.py) and says so to the
device.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from .mailbox import DeviceConnections
from .store import Store, StoreError

__all__ = ["POLL_S", "watch_admin_changes", "close_refused_devices"]

log = logging.getLogger("sonet.node.admin")

#: how often the counter is read: a disabled or removed account's sessions end, and a peer
#: added or removed is routed by, within about this
POLL_S = 0.25


async def watch_admin_changes(
    store: Store,
    connections: DeviceConnections,
    publish: Callable[[], Awaitable[None]],
    *,
    peers_changed: Callable[[], Awaitable[None]] | None = None,
    poll_s: float = POLL_S,
) -> None:
    """Poll for changes; ``publish`` has the key directory sign a head covering the leaf a
    removal appended (node/directory.py), so that monitors see it without a restart;
    ``peers_changed`` has federation read the peer table again."""
    seen = await store.admin_version()
    while True:
        await trio.sleep(poll_s)
        try:
            version = await store.admin_version()
            if version == seen:
                continue
            if peers_changed is not None:
                await peers_changed()
            closed = await close_refused_devices(store, connections)
            await publish()
        except StoreError as exc:  # e.g. the database is locked for long: try again next round
            log.warning("cannot check for disabled or removed accounts: %s", exc)
            continue
        seen = version
        if closed:
            log.info("closed %d connections of disabled or removed accounts", closed)


async def close_refused_devices(store: Store, connections: DeviceConnections) -> int:
    """Tell every live connection of a device that is removed, or whose account is disabled, to
    close; how many were told."""
    closed = 0
    for fingerprint in connections.fingerprints():
        row = await store.device_by_fingerprint(fingerprint)
        if row is None:
            refused = await store.removed_device(fingerprint) is not None
        else:
            refused = await store.account_disabled(row.account)
        if refused:
            closed += connections.removed(fingerprint)
    return closed
