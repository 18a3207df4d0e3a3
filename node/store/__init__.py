"""Node storage: the Store contract and its backends (SQLite, the default; PostgreSQL)."""

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
from .database_url import is_postgres_url, redact_url
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
    "redact_url",
]


async def open_store(target: str | os.PathLike[str]) -> SqliteStore:
    """Open the node's store, creating and migrating it: a ``postgresql://`` URL opens that
    PostgreSQL database (node/store/postgres.py), anything else is the path of an SQLite file.

    This is the one place that picks a backend. (The PostgreSQL store shares SqliteStore's
    methods, hence the return type.)
    """
    if isinstance(target, str) and is_postgres_url(target):
        from .postgres import PostgresStore  # psycopg only when a node uses PostgreSQL

        return await PostgresStore.open(target)
    return await SqliteStore.open(target)
