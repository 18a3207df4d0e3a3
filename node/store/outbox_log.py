"""The SQLite store's outboxes as appended batches plus an index in memory (issue 14 item 1;
docs/performance.md "The transit log").

Why: an outbox row per item costs SQLite a row and four index entries to insert, and as many to
delete, per envelope relayed; most of the sending node's store CPU. Here a write that queues
items appends one row per destination to ``outbox_batches`` holding all of them (msgpack), and
what is queued is known from memory.

On disk (migration 30; PostgreSQL keeps its ``outbox`` table, ``sqlite_federation.py``):

- ``outbox_batches(batch, dest, items)``: ``batch`` is AUTOINCREMENT, so an item's seq,
  ``batch << SLOT_BITS | slot``, is monotonic and never reused (an ``outbox_done`` naming items
  that went meanwhile can never settle a newer one). The row goes when its last item is settled;
  until then it is rewritten whenever some of its items are settled (their slots become nil) or a
  disappearing message's tracking is forgotten at its expiry (its id becomes nil), so that no row
  keeps what the outbox table would no longer hold. A write's items are usually pushed and
  settled together, so the row is inserted once and deleted once;
- ``outbox_meta(version)``: bumped by every write that changes ``outbox_batches``, so that a
  write by another connection is noticed (then the index is read again from the table).

In memory (``OutboxLog``): every queued item's seq, destination, key, expiry, size and tracking,
with its bytes while the cache has room (``CACHE_BYTES``; the rest are read from the batch rows
on the reader connection). It is rebuilt at open (``load``) from the tables.

Consistency with the transaction. The SQLite COMMIT stays the commit point: budgets, delivery
rows and everything else the same writes change commit with the batch rows, or none of it does.
Writes (on the writer thread, inside a group commit) change the index through a journal: they
see the committed index plus their group's journal. ``GroupCommit`` tells the log where each
transaction begins (``begin``), marks each write (``mark``) and undoes a write's changes with its
savepoint (``rollback_to``). ``capture`` hands the journal over just before the COMMIT;
``publish`` applies it on the trio thread after it, in commit order, before any caller of the
group returns, so whoever a commit wakes sees what it queued and nothing rolled back is ever seen.
Reads (``read``, ``expired``, ``counts``, ``next_expiry``) run on the trio thread, or on the
writer thread outside a group (``tracked``), and see committed state only; ``publish`` never runs
while a group or such a call runs (it runs on the trio thread right after the group's thread
call returned, before any other task can start one).
"""

from __future__ import annotations

import heapq
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgpack
import msgspec

from .base import OverBudget, Page, QueuedItem, StoreError
from .dialect import Connection
from .vanishing import is_short_lived

log = logging.getLogger("sonet.node.store")

__all__ = ["OutboxLog", "Logged", "SLOT_BITS", "MAX_SLOTS", "CACHE_BYTES", "MAX_ITEMS", "log_of"]

#: an item's seq is its batch << SLOT_BITS | its slot in the batch
SLOT_BITS = 12
MAX_SLOTS = 1 << SLOT_BITS
#: the bytes of queued items kept in memory (the rest are read from the batch rows)
CACHE_BYTES = 64 * 1024 * 1024
#: the items all outboxes may hold: each costs ~770 B of memory in the index besides its bytes
#: (tracemalloc), so past this (~190 MB) a write charged to a budget is refused ``outbox_full``
#: (the device or peer keeps its items and tries again); reports and a hub's fan-out are not
MAX_ITEMS = 250_000
#: the share of MAX_ITEMS one actor may hold (the origin node of relayed items, the sending
#: account of a local device's), so that one peer or user cannot take every other's room
ACTOR_SHARE = 4


def _actor(item: Logged) -> str | None:
    """Who an item counts towards in the item cap (None: a report or a hub's fan-out)."""
    if item.origin is not None:
        return "origin:" + item.origin
    return None if item.sender_account is None else "account:" + item.sender_account


class Logged(msgspec.Struct, eq=False):
    """A queued item as the index holds it (``data`` None: not cached, read from its batch).
    A msgspec struct (one per item queued: built in C, a fifth of a slots dataclass's
    __init__); eq=False: compared and hashed by identity, as the index needs."""

    seq: int
    dest: str
    key: bytes
    expires: int
    queued_at: int
    size: int
    origin: str | None
    sender_account: str | None
    sender_device: int | None
    id: bytes | None
    account: str | None
    device: int | None
    data: bytes | None = None

    @property
    def batch(self) -> int:
        return self.seq >> SLOT_BITS

    def tracked_row(self) -> tuple[Any, ...]:
        """What ``_TRACKED`` names (sqlite_federation.py): sender, (id, dest, device), expiry, queue time."""
        return (self.sender_account, self.sender_device, self.id, self.dest, self.device, self.expires, self.queued_at)

    def queued_item(self, data: bytes) -> QueuedItem:
        return QueuedItem(seq=self.seq, dest=self.dest, key=self.key, expires=self.expires, data=data, queued_at=self.queued_at)


def _record(item: Logged, data: bytes) -> list[Any]:
    return [item.key, item.expires, item.queued_at, item.origin, item.sender_account, item.sender_device, item.id, item.account, item.device, data]


def _decode(raw: bytes) -> list[list[Any] | None]:
    """A batch row's records: one per slot, None where the item was settled (StoreError: the
    row does not read as one, a damaged database)."""
    try:
        records = msgpack.unpackb(raw, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # noqa: BLE001 - msgpack raises several kinds for bad bytes
        raise StoreError(f"unreadable outbox batch: {exc}") from exc
    if not isinstance(records, list) or not all(r is None or (isinstance(r, list) and len(r) == 10) for r in records):
        raise StoreError("unreadable outbox batch: not a list of item records")
    return records


def log_of(conn: Any) -> OutboxLog | None:
    """The outbox log of a writer connection (None: the outbox is a table, PostgreSQL)."""
    return getattr(conn, "outbox_log", None)


class LogConnection(sqlite3.Connection):
    """The SQLite store's writer connection: it carries the store's outbox log, so that the
    backend's plain functions of a connection find it (``log_of``)."""

    outbox_log: OutboxLog | None = None


class _Index:
    """The queued items as of one commit (only ever changed on the trio thread, by ``publish``,
    or built anew on the writer thread and swapped in by ``publish``)."""

    def __init__(self, version: int = 0) -> None:
        self.version = version
        self.items: dict[int, Logged] = {}
        self.by_dest: dict[str, dict[int, Logged]] = {}  # each in seq order
        self.keys: dict[tuple[str, bytes], int] = {}
        self.by_id: dict[bytes, list[int]] = {}  # tracked items, in seq order
        self.live: dict[int, int] = {}  # batch -> its queued items
        self.actors: dict[str, int] = {}  # actor (``_actor``) -> its queued items
        #: per destination, (expires, seq) of its items: settled ones leave lazily (``_Heap``)
        self.expiry: dict[str, _Heap] = {}
        self.short: dict[int, int] = {}  # tracked disappearing messages: seq -> expires
        self.cached = 0

    def insert(self, item: Logged, cache_limit: int) -> None:
        if item.data is not None:
            if self.cached + item.size <= cache_limit:
                self.cached += item.size
            else:
                item.data = None
        self.items[item.seq] = item
        self.by_dest.setdefault(item.dest, {})[item.seq] = item
        self.keys[(item.dest, item.key)] = item.seq
        if item.id is not None and item.sender_account is not None:
            self.by_id.setdefault(item.id, []).append(item.seq)
            if is_short_lived(item.expires, item.queued_at):
                self.short[item.seq] = item.expires
        self.live[item.batch] = self.live.get(item.batch, 0) + 1
        actor = _actor(item)
        if actor is not None:
            self.actors[actor] = self.actors.get(actor, 0) + 1
        heap = self.expiry.get(item.dest)
        if heap is None:
            heap = self.expiry[item.dest] = _Heap()
        heap.push(item.expires, item.seq)

    def remove(self, seq: int) -> None:
        item = self.items.pop(seq, None)
        if item is None:
            return
        if item.data is not None:
            self.cached -= item.size
        queue = self.by_dest[item.dest]
        del queue[seq]
        if not queue:
            del self.by_dest[item.dest]
            del self.expiry[item.dest]
        else:
            self.expiry[item.dest].settled(queue)
        if self.keys.get((item.dest, item.key)) == seq:
            del self.keys[(item.dest, item.key)]
        seqs = self.by_id.get(item.id) if item.id is not None else None
        if seqs is not None:
            if seq in seqs:
                seqs.remove(seq)
            if not seqs:
                del self.by_id[item.id]  # type: ignore[arg-type]
        actor = _actor(item)
        if actor is not None:
            held = self.actors[actor] - 1
            if held:
                self.actors[actor] = held
            else:
                del self.actors[actor]
        left = self.live[item.batch] - 1
        if left:
            self.live[item.batch] = left
        else:
            del self.live[item.batch]
        self.short.pop(seq, None)

    def untrack(self, seq: int) -> None:
        """The item's tracking is forgotten (a disappearing message expired while queued)."""
        item = self.items.get(seq)
        if item is None or item.id is None:
            return
        seqs = self.by_id.get(item.id)
        if seqs is not None:
            if seq in seqs:
                seqs.remove(seq)
            if not seqs:
                del self.by_id[item.id]
        self.short.pop(seq, None)
        untracked = msgspec.structs.replace(item, id=None)
        self.items[seq] = self.by_dest[item.dest][seq] = untracked


def _version(conn: Connection) -> int:
    row = conn.execute("SELECT version FROM outbox_meta").fetchone()
    return 0 if row is None else int(row[0])


class OutboxLog:
    """The outboxes of one SQLite store (module docstring)."""

    def __init__(self, cache_bytes: int = CACHE_BYTES, max_items: int = MAX_ITEMS) -> None:
        self._cache_limit = cache_bytes
        self.max_items = max_items
        #: told (on the trio thread) the destinations whose outboxes were read again from the
        #: tables because another connection changed them: their workers must read again
        self.reloaded: Callable[[set[str]], object] | None = None
        #: as of the last commit published (read on the trio thread; the writer thread reads it
        #: only inside a group, while nothing publishes)
        self._index = _Index()
        # The running transaction: the index it started from (``_index``, or one read anew from
        # the tables when another connection changed them), its journal, and what that changed.
        self._base = self._index
        self._fresh: _Index | None = None
        self._ops: list[tuple[str, Any]] = []
        self._added: dict[int, Logged] = {}
        self._added_keys: dict[tuple[str, bytes], int] = {}
        self._added_ids: dict[bytes, list[int]] = {}
        self._gone: set[int] = set()
        self._j_live: dict[int, int] = {}  # batch -> items added less items gone
        self._j_actors: dict[str, int] = {}  # actor -> items added less items gone
        self._j_untracked: set[int] = set()

    # Opening -------------------------------------------------------------------------------

    def load(self, conn: Connection) -> None:
        """Build the index from the tables (at open, on the writer thread, before any reader)."""
        self._index = self._base = self._read_tables(conn)

    def _read_tables(self, conn: Connection) -> _Index:
        index = _Index(_version(conn))
        for batch, dest, raw in conn.execute("SELECT batch, dest, items FROM outbox_batches ORDER BY batch"):
            try:
                items = [self._item(batch << SLOT_BITS | slot, dest, r) for slot, r in enumerate(_decode(bytes(raw))) if r is not None]
            except (StoreError, TypeError, ValueError) as exc:
                # A damaged row must not keep the node from starting: its items are left where
                # they are (the operator can look at the row), and the others go on.
                log.error("outbox batch %d towards %s is unreadable (a damaged database), its items are skipped: %s", batch, dest, exc)
                continue
            for item in items:
                index.insert(item, self._cache_limit)
        return index

    @staticmethod
    def _item(seq: int, dest: str, record: list[Any]) -> Logged:
        key, expires, queued_at, origin, sender_account, sender_device, id_, account, device, data = record
        return Logged(
            seq, dest, bytes(key), expires, queued_at, len(data), origin, sender_account, sender_device,
            None if id_ is None else bytes(id_), account, device, bytes(data),
        )  # fmt: skip

    @property
    def version(self) -> int:
        """The tables' version as of the last commit published (``outbox_version`` reads theirs)."""
        return self._index.version

    # Group commit (CommitObserver) -----------------------------------------------------------

    def begin(self, conn: Connection) -> None:
        """A group's transaction began (again, if its plain run was rolled back)."""
        self._clear_journal()
        if _version(conn) != self._index.version:  # another connection changed the outboxes
            self._fresh = self._base = self._read_tables(conn)

    def mark(self) -> int:
        return len(self._ops)

    def rollback_to(self, mark: int) -> None:
        """The write run since ``mark`` was undone by its savepoint: so are its changes."""
        ops, fresh = self._ops[:mark], self._fresh
        self._clear_journal()
        self._fresh = fresh
        self._base = fresh or self._index
        for op, arg in ops:
            self._journal(op, arg)

    def capture(self, conn: Connection) -> tuple[_Index | None, list[tuple[str, Any]]]:
        ops, fresh = self._ops, self._fresh
        if ops:  # every write that journals also wrote the new version (``_bump``)
            ops.append(("version", self._base.version + 1))
        self._clear_journal()
        return fresh, ops

    def publish(self, captured: tuple[_Index | None, list[tuple[str, Any]]]) -> None:
        """On the trio thread, once the group committed: its changes, in its order."""
        fresh, ops = captured
        changed: set[str] = set()
        if fresh is not None:
            changed = {*self._index.by_dest, *fresh.by_dest}
            self._index = fresh
        index = self._index
        for op, arg in ops:
            if op == "add":
                index.insert(arg, self._cache_limit)
            elif op == "gone":
                index.remove(arg)
            elif op == "untrack":
                index.untrack(arg)
            else:
                index.version = arg
        self._base = self._index
        if changed and self.reloaded is not None:
            try:
                self.reloaded(changed)
            except Exception:  # noqa: BLE001 - the index holds the commit all the same
                log.exception("waking the outbox workers after a reload failed")

    def failed(self) -> None:
        """The group failed, or its publish did: the index may not be what the tables hold,
        so the next group reads them again (``begin``)."""
        self._clear_journal()
        self._index.version = -1

    def _clear_journal(self) -> None:
        self._fresh = None
        self._base = self._index
        self._ops = []
        self._added.clear()
        self._added_keys.clear()
        self._added_ids.clear()
        self._gone.clear()
        self._j_live.clear()
        self._j_actors.clear()
        self._j_untracked.clear()

    def _journal(self, op: str, arg: Any) -> None:
        self._ops.append((op, arg))
        if op == "add":
            self._added[arg.seq] = arg
            self._added_keys[(arg.dest, arg.key)] = arg.seq
            if arg.id is not None:
                self._added_ids.setdefault(arg.id, []).append(arg.seq)
            self._j_live[arg.seq >> SLOT_BITS] = self._j_live.get(arg.seq >> SLOT_BITS, 0) + 1
            self._actor_delta(arg, 1)
        elif op == "gone":
            gone = self._find(arg)
            if gone is not None:
                self._actor_delta(gone, -1)
            self._gone.add(arg)
            self._j_live[arg >> SLOT_BITS] = self._j_live.get(arg >> SLOT_BITS, 0) - 1
        elif op == "untrack":
            self._j_untracked.add(arg)

    def _actor_delta(self, item: Logged, n: int) -> None:
        actor = _actor(item)
        if actor is not None:
            self._j_actors[actor] = self._j_actors.get(actor, 0) + n

    # Writer thread, inside a group: the base index plus the journal -------------------------

    def _find(self, seq: int) -> Logged | None:
        if seq in self._gone:
            return None
        return self._added.get(seq) or self._base.items.get(seq)

    def _tracked_now(self, item: Logged) -> bool:
        return item.id is not None and item.sender_account is not None and item.seq not in self._j_untracked

    def queued(self, dest: str, key: bytes) -> bool:
        """Whether (dest, key) is queued, as this transaction sees it."""
        for seq in (self._added_keys.get((dest, key)), self._base.keys.get((dest, key))):
            if seq is not None and self._find(seq) is not None:
                return True
        return False

    def append(self, conn: Connection, dest: str, items: Sequence[tuple[Logged, bytes]], *, capped: bool = True) -> None:
        """Queue ``items`` ((item without its seq, its bytes), in order) for ``dest``: one batch
        row per MAX_SLOTS items. ``capped``: OverBudget past ``max_items`` (nothing written)."""
        if not items:
            return
        if capped:
            self._check_cap(items)
        for start in range(0, len(items), MAX_SLOTS):
            chunk = items[start : start + MAX_SLOTS]
            raw = msgpack.packb([_record(item, data) for item, data in chunk], use_bin_type=True)
            batch = conn.execute("INSERT INTO outbox_batches (dest, items) VALUES (?, ?) RETURNING batch", (dest, raw)).fetchone()[0]
            for slot, (item, data) in enumerate(chunk):
                item.seq = batch << SLOT_BITS | slot
                item.data = data
                self._journal("add", item)
        self._bump(conn)

    def _check_cap(self, items: Sequence[tuple[Logged, bytes]]) -> None:
        """OverBudget if ``items`` would put the outboxes past ``max_items``, or one actor past
        its share of it, as this transaction sees them."""
        if len(self._base.items) + len(self._added) - len(self._gone) + len(items) > self.max_items:
            raise OverBudget(
                "outbox_full", f"this node's outboxes hold as many items as it keeps ({self.max_items:,}); try again later"
            )
        adding: dict[str, int] = {}
        for item, _ in items:
            actor = _actor(item)
            if actor is not None:
                adding[actor] = adding.get(actor, 0) + 1
        share = self.max_items // ACTOR_SHARE
        for actor, n in adding.items():
            if self._base.actors.get(actor, 0) + self._j_actors.get(actor, 0) + n > share:
                who = actor.partition(":")[2]
                raise OverBudget("outbox_full", f"this node's outboxes hold as many items for {who} as it keeps ({share:,}); try again later")

    def take(self, conn: Connection, dest: str, seqs: Iterable[int]) -> list[tuple[Logged, bool]]:
        """Settle the queued items of ``dest`` among ``seqs`` (others are ignored: gone
        already, or another destination's), in seq order: each with whether it was still
        tracked (a disappearing message's tracking goes at its expiry)."""
        found = {self._find(seq) for seq in seqs}
        taken = sorted((item for item in found if item is not None and item.dest == dest), key=lambda item: item.seq)
        if not taken:
            return []
        out = [(item, self._tracked_now(item)) for item in taken]
        batches: dict[int, list[int]] = {}
        for item in taken:
            self._journal("gone", item.seq)
            batches.setdefault(item.batch, []).append(item.seq)
        for batch in batches:
            if self._queued_in(batch) == 0:  # its last items: the row goes
                conn.execute("DELETE FROM outbox_batches WHERE batch = ?", (batch,))
            else:
                self._rewrite(conn, batch)
        self._bump(conn)
        return out

    def _rewrite(self, conn: Connection, batch: int) -> None:
        """Rewrite ``batch``'s row as this transaction sees it: a settled item's slot nil (its
        bytes, key and id kept by no row, as when each item was a row; the slot stays so that
        the others keep their seqs), a forgotten tracking's id nil."""
        row = conn.execute("SELECT items FROM outbox_batches WHERE batch = ?", (batch,)).fetchone()
        if row is None:
            return
        records = _decode(bytes(row[0]))
        for slot, record in enumerate(records):
            seq = batch << SLOT_BITS | slot
            if record is None:
                continue
            if self._find(seq) is None:
                records[slot] = None
            elif seq in self._j_untracked:
                record[6] = None
        conn.execute("UPDATE outbox_batches SET items = ? WHERE batch = ?", (msgpack.packb(records, use_bin_type=True), batch))

    def _queued_in(self, batch: int) -> int:
        """Items of ``batch`` still queued as this transaction sees it."""
        return self._base.live.get(batch, 0) + self._j_live.get(batch, 0)

    def untrack_vanished(self, conn: Connection, now: int) -> None:
        """Forget the tracking of disappearing messages whose envelopes expired by ``now``
        (their items stay, for their workers to settle without a delivery row)."""
        # (the base's disappearing messages from their own small map: the expiry heap is the
        # trio thread's)
        candidates = [
            *(seq for seq, expires in list(self._base.short.items()) if expires <= now),
            *(seq for seq, item in self._added.items() if item.expires <= now),
        ]
        seqs = [
            seq
            for seq in candidates
            if (item := self._find(seq)) is not None and self._tracked_now(item) and is_short_lived(item.expires, item.queued_at)
        ]
        if seqs:
            for seq in seqs:
                self._journal("untrack", seq)
            for batch in sorted({seq >> SLOT_BITS for seq in seqs}):
                self._rewrite(conn, batch)
            self._bump(conn)

    def first_tracked(self, id_: bytes, dest: str, device: int) -> Logged | None:
        """The first queued tracked item of envelope ``id_`` to (dest, device), as this
        transaction sees it."""
        for seq in sorted({*self._base.by_id.get(id_, ()), *self._added_ids.get(id_, ())}):
            item = self._find(seq)
            if item is not None and item.dest == dest and item.device == device and self._tracked_now(item):
                return item
        return None

    def _bump(self, conn: Connection) -> None:
        """Every write that changes the tables says so (once per write, not per item): the
        transaction's commit makes the version its base's plus one."""
        conn.execute(
            "INSERT INTO outbox_meta (one, version) VALUES (1, ?) ON CONFLICT (one) DO UPDATE SET version = excluded.version",
            (self._base.version + 1,),
        )

    # Trio thread: the committed index ----------------------------------------------------------

    def tracked(self, sender_account: str, sender_device: int, ids: Iterable[bytes]) -> list[Logged]:
        """The queued tracked items of ``ids`` sent by that device, in seq order."""
        index = self._index
        found = [
            item
            for id_ in set(ids)
            for seq in index.by_id.get(id_, ())
            if (item := index.items[seq]).sender_account == sender_account and item.sender_device == sender_device
        ]
        return sorted(found, key=lambda item: item.seq)

    def read(self, dest: str, *, after: int, limit: int, max_bytes: int, now: int) -> tuple[list[Logged], bool]:
        """The unexpired items of ``dest`` past ``after``, in order, up to ``limit`` and
        ``max_bytes`` (at least one); and whether that is all of them (``Page.complete``)."""
        out: list[Logged] = []
        total = 0
        for seq, item in self._index.by_dest.get(dest, {}).items():
            if seq <= after or item.expires <= now:
                continue
            if len(out) == limit or (out and total + item.size > max_bytes):
                return out, False
            total += item.size
            out.append(item)
        return out, len(out) < limit  # (a read that stopped at its count may have missed more)

    def expired(self, dest: str, *, limit: int, max_bytes: int, now: int) -> list[Logged]:
        """The expired items of ``dest``, in order, up to ``limit`` and ``max_bytes``."""
        out: list[Logged] = []
        total = 0
        index = self._index
        heap = index.expiry.get(dest)
        queue = index.by_dest.get(dest, {})
        if heap is None or not heap.any_upto(now, queue):
            return out
        # In queue order, up to the caps: expired items are mostly the oldest (the queue of a
        # destination that is down), so this stops after about ``limit`` items, where sorting
        # every expired item took 0.5 s for 200,000 of them (review rev12).
        for item in queue.values():
            if item.expires > now:
                continue
            if len(out) == limit or (out and total + item.size > max_bytes):
                break
            total += item.size
            out.append(item)
        return out

    def next_expiry(self, after: int) -> int | None:
        """The earliest ``expires`` above ``after`` of a queued item."""
        index = self._index
        found = [heap.first_after(after, index.by_dest[dest]) for dest, heap in index.expiry.items()]
        return min((f for f in found if f is not None), default=None)

    def counts(self) -> dict[str, int]:
        return {dest: len(queue) for dest, queue in self._index.by_dest.items()}

    def __len__(self) -> int:
        return len(self._index.items)

    @staticmethod
    def bodies(conn: Connection, items: Sequence[Logged]) -> dict[int, bytes]:
        """The bytes of ``items`` (uncached ones) read from their batch rows, by seq."""
        wanted: dict[int, list[Logged]] = {}
        for item in items:
            wanted.setdefault(item.batch, []).append(item)
        out: dict[int, bytes] = {}
        batches = list(wanted)
        for start in range(0, len(batches), 500):
            chunk = batches[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for batch, raw in conn.execute(f"SELECT batch, items FROM outbox_batches WHERE batch IN ({marks})", chunk):  # noqa: S608
                records = _decode(bytes(raw))
                for item in wanted[batch]:
                    record = records[item.seq & (MAX_SLOTS - 1)]
                    if record is not None:  # (else settled since: left out, page_of)
                        out[item.seq] = bytes(record[9])
        return out


class _Heap:
    """(expires, seq) of one destination's items, earliest first. A settled item's entry is
    dropped lazily, and the heap is rebuilt once it holds twice the items queued (so it never
    grows with the items that went through). Only the trio thread touches it."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[tuple[int, int]] = []

    def push(self, expires: int, seq: int) -> None:
        heapq.heappush(self.entries, (expires, seq))

    def settled(self, queue: dict[int, Logged]) -> None:
        if len(self.entries) > 2 * len(queue) + 64:
            self.entries = [(item.expires, seq) for seq, item in queue.items()]
            heapq.heapify(self.entries)

    def any_upto(self, now: int, queue: dict[int, Logged]) -> bool:
        """Whether a queued item has ``expires <= now`` (settled entries at the top dropped)."""
        while self.entries and self.entries[0][1] not in queue:
            heapq.heappop(self.entries)
        return bool(self.entries) and self.entries[0][0] <= now

    def first_after(self, after: int, queue: dict[int, Logged]) -> int | None:
        """The earliest ``expires`` above ``after`` of a queued item."""
        popped = []
        found = None
        while self.entries:
            expires, seq = self.entries[0]
            if seq not in queue:
                heapq.heappop(self.entries)  # settled: dropped for good
                continue
            if expires > after:
                found = expires
                break
            popped.append(heapq.heappop(self.entries))
        for entry in popped:
            heapq.heappush(self.entries, entry)
        return found


def outbox_version(conn: Connection) -> int:
    """The outbox tables' version (``OutboxLog.version`` is the index's)."""
    return _version(conn)


def page_of(items: Sequence[Logged], bodies: dict[int, bytes], complete: bool) -> Page[QueuedItem]:
    """A reader's page: each item with its bytes (cached, or in ``bodies``; an item settled
    while its bytes were read is left out: the others still are what the page says)."""
    page: Page[QueuedItem] = Page()
    for item in items:
        data = item.data if item.data is not None else bodies.get(item.seq)
        if data is not None:
            page.append(item.queued_item(data))
    page.complete = complete
    return page


_ROWS = "dest, key, expires, data, queued_at, origin, sender_account, sender_device, id, account, device"


def move_rows(conn: sqlite3.Connection) -> None:
    """Queue what an outbox table from before migration 30 (``outbox_rows``) holds as batches,
    in its order, and drop the table (at open, before the log is loaded)."""
    def exists() -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox_rows'").fetchone() is not None

    if not exists():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if exists():  # (another process may have moved them meanwhile)
            dests = [row[0] for row in conn.execute("SELECT DISTINCT dest FROM outbox_rows ORDER BY dest")]
            for dest in dests:
                cursor = conn.execute(f"SELECT {_ROWS} FROM outbox_rows WHERE dest = ? ORDER BY seq", (dest,))  # noqa: S608
                while chunk := cursor.fetchmany(MAX_SLOTS):
                    records = [
                        [bytes(key), expires, queued_at, origin, sa, sd, None if id_ is None else bytes(id_), account, device, bytes(data)]
                        for _, key, expires, data, queued_at, origin, sa, sd, id_, account, device in chunk
                    ]
                    conn.execute(
                        "INSERT INTO outbox_batches (dest, items) VALUES (?, ?)", (dest, msgpack.packb(records, use_bin_type=True))
                    )
            conn.execute("DROP TABLE outbox_rows")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


#: the columns ``queued_rows`` gives, those of the outbox table PostgreSQL keeps
QUEUED_ROW_COLUMNS = "seq, dest, key, expires, data, queued_at, size, origin, sender_account, sender_device, id, account, device"


def queued_rows(conn: Connection) -> list[tuple[Any, ...]]:
    """Every queued item as the table holds it (not the index), in seq order, as rows of
    ``QUEUED_ROW_COLUMNS``: for checks and inspection (a tracking forgotten at a disappearing
    message's expiry reads as a NULL id, as in PostgreSQL's table)."""
    rows = []
    for batch, dest, raw in conn.execute("SELECT batch, dest, items FROM outbox_batches ORDER BY batch"):
        for slot, record in enumerate(_decode(bytes(raw))):
            if record is not None:
                key, expires, queued_at, origin, sa, sd, id_, account, device, data = record
                seq = batch << SLOT_BITS | slot
                rows.append((seq, dest, bytes(key), expires, bytes(data), queued_at, len(data), origin, sa, sd, None if id_ is None else bytes(id_), account, device))
    return rows
