"""Node storage: the Store contract and its backends (SQLite today; PostgreSQL later)."""

from __future__ import annotations

import os

from .base import (
    DELIVERY_GRACE_MS,
    AccountExists,
    SenderRemoved,
    AccountRow,
    AccountSummary,
    InviteRow,
    DeliveryRow,
    DeviceKeySet,
    DeviceRow,
    RemovedDeviceRow,
    HeadRow,
    Inbound,
    InviteInvalid,
    MailboxItem,
    NewEnvelope,
    OutboundItem,
    Peer,
    PeerExists,
    PeerInvalid,
    PrekeySet,
    QueuedItem,
    Quota,
    QuotaExceeded,
    OverBudget,
    BUDGET_CODES,
    STORED_ROW_OVERHEAD,
    SplitRow,
    StaleDeviceList,
    StatusUpdate,
    Store,
    StoreError,
    Tracking,
    WitnessRow,
)
from .sqlite import SqliteStore

__all__ = [
    "AccountSummary",
    "InviteRow",
    "Store",
    "StoreError",
    "QuotaExceeded",
    "OverBudget",
    "BUDGET_CODES",
    "STORED_ROW_OVERHEAD",
    "AccountExists",
    "SenderRemoved",
    "InviteInvalid",
    "StaleDeviceList",
    "AccountRow",
    "PrekeySet",
    "DeviceKeySet",
    "DeviceRow",
    "RemovedDeviceRow",
    "MailboxItem",
    "NewEnvelope",
    "Quota",
    "Peer",
    "PeerExists",
    "PeerInvalid",
    "DeliveryRow",
    "OutboundItem",
    "QueuedItem",
    "StatusUpdate",
    "Tracking",
    "Inbound",
    "DELIVERY_GRACE_MS",
    "HeadRow",
    "WitnessRow",
    "SplitRow",
    "SqliteStore",
    "open_store",
]


async def open_store(path: str | os.PathLike[str]) -> Store:
    """Open the node's store at ``path`` (an SQLite file), creating and migrating it.

    This is the one place that picks a backend; a PostgreSQL URL will be dispatched here.
    """
    return await SqliteStore.open(path)
