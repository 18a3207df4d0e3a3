"""Stored-bytes budgets of the SQLite backend (``Quota``): what each actor holds on this node
right now, and the check that refuses a write that would take one over its budget, or the node
into its disk reserve.

What is held is kept in ``storage_usage`` (scope, key) -> (rows, body bytes), in the
transaction that stores or removes a row, so reading an actor's usage is one key lookup. For
``mailbox`` rows, triggers keep it (migrations.py): every way a row comes or goes -- a store,
an acknowledgement, a purge, a device removed with its mailbox -- is counted. ``outbox``
rows are built in one place (``_outbound_row``) and deleted in one (``_outbox_done``), which
count them with ``UsageChanges``: once per key and write, not a trigger per row and scope
(three upserts per queued envelope and three updates per settled one cost a relaying node
about as much as the outbox rows themselves; docs/performance.md "Store work per envelope,
round 6").
Scopes: "device" ("account/device id" of a local sending device) and "account" (its account)
for its envelopes in local mailboxes and its items in outboxes; "outbox" (destination node) for
every queued item; "origin" (origin node) for the items this node relays on its behalf, and
what a hub stores and queues for a group submission that node pushed (sqlite_groups.py);
"origin_refs" (origin node) for a hub's records of those submissions (``ORIGIN_REFS_FACTOR``);
"group_waiting" (the hub that pushed them) for a member node's rows of the devices its items
still have to reach (``WAITING_FACTOR``: held per item, not by ``enforce``); "group_hub"
("account/device id/hub", by the mailbox triggers) for a device's group items another node's
hub pushed (held to its share of the device's allowance by sqlite_groups.py ``_deliver``).

A write stores first and then calls ``enforce`` with what it added, in the same transaction: an
``OverBudget`` from there undoes the whole write (and only it: group_commit.py). So the check
and the write see the same state: there is no check-then-write race.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .base import STORED_ROW_OVERHEAD, OverBudget, Quota
from .dialect import Connection, database_bytes

__all__: list[str] = []  # private to the SQLite backend

#: free bytes on the database's file system (``SqliteStore`` passes the real one)
DiskFree = Callable[[], int]


def disk_free_at(path: str) -> DiskFree:
    """The space an unprivileged writer may still use on ``path``'s file system."""
    directory = os.path.dirname(os.path.abspath(path))

    def free() -> int:
        st = os.statvfs(directory)
        return st.f_bavail * st.f_frsize

    return free


def device_key(account: str, device_id: int) -> str:
    """The ``storage_usage`` key of a local sending device (the mailbox triggers and
    ``UsageChanges`` build the same)."""
    return f"{account}/{device_id}"


class Charges:
    """What one write adds: the actors it charges and the bytes it stores in all."""

    __slots__ = ("devices", "accounts", "outboxes", "origins", "refs", "bytes", "waiting")

    def __init__(self) -> None:
        self.devices: set[str] = set()
        self.accounts: set[str] = set()
        self.outboxes: set[str] = set()
        self.origins: set[str] = set()
        self.refs: set[str] = set()
        self.bytes = 0
        #: the group_waiting rows each pushing hub may still add in this write (``waiting_room``)
        self.waiting: dict[str, int] = {}

    def stored(self, size: int) -> None:
        """A row of ``size`` body bytes (what the disk reserve counts)."""
        self.bytes += size + STORED_ROW_OVERHEAD

    def sender(self, account: str, device_id: int, size: int) -> None:
        self.devices.add(device_key(account, device_id))
        self.accounts.add(account)
        self.stored(size)

    def relayed(self, origin: str, size: int) -> None:
        """A row of ``size`` body bytes held on behalf of origin node ``origin`` (its relay budget)."""
        self.origins.add(origin)
        self.stored(size)

    def ref(self, origin: str) -> None:
        """A hub's record of a submission node ``origin`` pushed (``ORIGIN_REFS``)."""
        self.refs.add(origin)
        self.stored(0)

    def queued(self, dest: str, size: int, *, origin: str | None, sender: tuple[str, int] | None) -> None:
        self.outboxes.add(dest)
        if origin is not None:
            self.origins.add(origin)
        if sender is not None:
            self.devices.add(device_key(*sender))
            self.accounts.add(sender[0])
        self.stored(size)


#: an outbox row's owners in storage_usage: destination, origin node, sending account and device
_Owners = tuple[str, "str | None", "str | None", "int | None"]


class UsageChanges:
    """What one write adds to (or, negative, takes from) ``storage_usage`` for the outbox rows
    it queues or settles: summed per owners while rows come (one dict update per row), spread
    over the scopes and written once by ``apply``."""

    __slots__ = ("_sums",)

    def __init__(self) -> None:
        self._sums: dict[_Owners, list[int]] = {}

    def outbox_row(
        self, sign: int, dest: str, size: int, origin: str | None, sender_account: str | None, sender_device: int | None
    ) -> None:
        """An outbox row queued (``sign`` 1) or deleted (-1): it counts towards its destination's
        outbox, the origin node it is relayed for, and the local device and account that sent it."""
        sums = self._sums.get((dest, origin, sender_account, sender_device))
        if sums is None:
            self._sums[(dest, origin, sender_account, sender_device)] = [sign, sign * size]
        else:
            sums[0] += sign
            sums[1] += sign * size

    def add(self, other: UsageChanges) -> None:
        """Take ``other``'s sums too (a part of the write kept after its savepoint)."""
        for owners, (n, size) in other._sums.items():
            sums = self._sums.setdefault(owners, [0, 0])
            sums[0] += n
            sums[1] += size

    def apply(self, conn: Connection) -> None:
        """Write the sums (before ``enforce`` reads them) and start again from none."""
        by_key: dict[tuple[str, str], list[int]] = {}
        for (dest, origin, sender_account, sender_device), (n, size) in self._sums.items():
            keys = [("outbox", dest)]
            if origin is not None:
                keys.append(("origin", origin))
            if sender_account is not None and sender_device is not None:  # (set together)
                keys += [("device", device_key(sender_account, sender_device)), ("account", sender_account)]
            for key in keys:
                sums = by_key.setdefault(key, [0, 0])
                sums[0] += n
                sums[1] += size
        self._sums.clear()
        # In (scope, key) order: two writes that update the same counters (on PostgreSQL, each
        # row locked until its commit) then wait for each other in turn, never in a cycle that
        # holds both until the deadlock check aborts one (1 s; items for beta and gamma queued
        # at once, one write naming beta first and the other gamma).
        conn.executemany(
            "INSERT INTO storage_usage (scope, key, count, bytes) VALUES (?, ?, ?, ?) ON CONFLICT (scope, key)"
            " DO UPDATE SET count = storage_usage.count + excluded.count, bytes = storage_usage.bytes + excluded.bytes",
            [(scope, key, n, size) for (scope, key), (n, size) in sorted(by_key.items()) if n or size],
        )


def held(conn: Connection, scope: str, key: str) -> int:
    """The bytes ``key`` holds in ``scope``, each row charged ``STORED_ROW_OVERHEAD`` more."""
    row = conn.execute("SELECT count, bytes FROM storage_usage WHERE scope = ? AND key = ?", (scope, key)).fetchone()
    return 0 if row is None else row[1] + row[0] * STORED_ROW_OVERHEAD


#: A hub keeps a record of each submission another node pushed (``hub_refs``, ~100 bytes on disk)
#: until its item expires, however soon it was delivered: counted apart from what it relays for
#: that node ("origin_refs"), in rows of STORED_ROW_OVERHEAD, up to this many times that budget
#: (the default 256 MiB: 16 Mi records, 6.5 submissions a second for the 30-day TTL), so that a
#: busy honest node is not refused for records of what was long delivered.
ORIGIN_REFS_FACTOR = 16


#: A member node notes which of its devices a pushed ORDERED item still has to reach while they
#: are at their allowance of group items (``group_waiting``, until reached or expired): rows of
#: the pushing hub, counted apart from what it relays here, in rows of STORED_ROW_OVERHEAD, up to
#: this many times that budget (the default 256 MiB: 16 Mi rows, 6.5 a second for the 30-day
#: TTL). Any peer can start a group naming a device here; past the cap an item goes to the
#: devices with room and its full ones get no rows (sqlite_groups.py ``_deliver_taken``: the hub
#: pushes it again), and nothing else of the push is refused for them.
WAITING_FACTOR = 16


def waiting_room(conn: Connection, quota: Quota, charges: Charges, hub: str) -> int | None:
    """How many more ``group_waiting`` rows ``hub``'s items may add here (None: no cap): read
    once a write (the caller counts down ``charges.waiting`` as it adds rows)."""
    if quota.relay_origin_bytes is None:
        return None
    room = charges.waiting.get(hub)
    if room is None:
        room = max(0, (quota.relay_origin_bytes * WAITING_FACTOR - held(conn, "group_waiting", hub)) // STORED_ROW_OVERHEAD)
        charges.waiting[hub] = room
    return room


def enforce(conn: Connection, quota: Quota, charges: Charges, disk_free: DiskFree) -> None:
    """OverBudget if, with what ``charges`` stored already written, an actor it charged is
    over its budget or the node is in its disk reserve (or over its maximum size)."""
    if not charges.bytes:
        return  # nothing new: a retransmission is never refused
    if quota.reserve_bytes and disk_free() - charges.bytes < quota.reserve_bytes:
        raise OverBudget("disk_full", "this node is low on disk space and takes no new messages now; try again later")
    if quota.max_store_bytes is not None:
        if database_bytes(conn) > quota.max_store_bytes:
            raise OverBudget("disk_full", "this node's database is at its maximum size and takes no new messages now; try again later")
    _over(conn, "device", charges.devices, quota.sender_device_bytes, "sender_full", "the device {} has as much undelivered as it may store on this node; try again once some is delivered")
    _over(conn, "account", charges.accounts, quota.sender_account_bytes, "sender_full", "the account {} has as much undelivered as it may store on this node; try again once some is delivered")
    _over(conn, "origin", charges.origins, quota.relay_origin_bytes, "relay_full", "this node holds as much as it may relay for {}; try again later")
    refs = None if quota.relay_origin_bytes is None else quota.relay_origin_bytes * ORIGIN_REFS_FACTOR
    _over(conn, "origin_refs", charges.refs, refs, "relay_full", "this node holds as many records of group submissions as it may for {}; try again later")
    _over(conn, "outbox", charges.outboxes, quota.outbox_bytes, "outbox_full", "the outbox towards {} is full (it has not been taking messages); try again later")


def _over(conn: Connection, scope: str, keys: set[str], budget: int | None, code: str, message: str) -> None:
    if budget is None:
        return
    for key in sorted(keys):
        if held(conn, scope, key) > budget:
            raise OverBudget(code, message.format(key))
