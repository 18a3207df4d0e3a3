"""The federation half of the SQLite backend: outboxes, relay deduplication (``outbox_sent``),
delivery rows, what peers push (``receive``), peer keys, and their expiry (expired outbox items
are read with ``_expired_outbox`` and settled by the caller, not dropped here).

Plain functions of a connection, like the rest of the backend: ``SqliteStore`` (``sqlite.py``) runs
each on its worker thread, inside the transaction it opens where the function writes. An envelope
a peer pushes is stored with the mailbox primitives of ``sqlite_mailbox.py``, the same ones
``enqueue`` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from typing import Any

from sonet.core.federation_api import OK
from sonet.federation.ports import Page

from .dialect import Connection, insert_rows
from .outbox_log import Logged, log_of
from .base import (
    DELIVERY_GRACE_MS,
    DeliveryRow,
    GroupReceived,
    Inbound,
    NewEnvelope,
    OutboundItem,
    QueuedItem,
    Quota,
    StatusUpdate,
    StoreError,
)
from .sqlite_budgets import Charges, DiskFree, UsageChanges, enforce
from .sqlite_mailbox import MailboxCounts, _device_exists, _envelope_row, _insert_envelopes, _known, _mailbox_usage
from .vanishing import SHORT_LIVED_MS, is_short_lived

__all__: list[str] = []  # private to the SQLite backend; SqliteStore is the public face


# Peer keys ---------------------------------------------------------------------------------

def _set_peer_key(conn: Connection, name: str, fingerprint: str, key: bytes) -> bool:
    # Matching the pin too: a key checked against a pin the operator has since replaced
    # (remove + add) must not be attached to the new entry.
    return (
        conn.execute(
            "UPDATE peers SET key = ? WHERE name = ? AND fingerprint = ?", (key, name, fingerprint)
        ).rowcount
        > 0
    )


# Outboxes and delivery tracking ------------------------------------------------------------

_TRACKING_COLUMNS = "sender_account, sender_device, id, account, device"
#: an outbox item's columns as its readers read them (also tail_capture.py)
QUEUED_COLUMNS = "seq, dest, key, expires, data, queued_at"


def queued_item(row: tuple[Any, ...]) -> QueuedItem:
    seq, dest, key, expires, data, queued_at = row
    return QueuedItem(seq=seq, dest=dest, key=bytes(key), expires=expires, data=bytes(data), queued_at=queued_at)


#: keys per ``IN (...)`` query (SQLite allows 32,766 parameters)
_KEYS_PER_QUERY = 500


def _queued_or_sent(conn: Connection, items: list[OutboundItem], now: int) -> set[tuple[str, bytes]]:
    """The (dest, key) of ``items`` that are queued, or were handed on and are still
    remembered: two queries per destination and 500 keys, not two per item."""
    keys_by_dest: dict[str, list[bytes]] = {}
    for item in items:
        keys_by_dest.setdefault(item.dest, []).append(item.key)
    known: set[tuple[str, bytes]] = set()
    log = log_of(conn)
    for dest, keys in keys_by_dest.items():
        if log is not None:
            known.update((dest, key) for key in keys if log.queued(dest, key))
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start : start + _KEYS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            for sql, extra in (
                *(() if log is not None else ((f"SELECT key FROM outbox WHERE dest = ? AND key IN ({marks})", ()),)),
                (f"SELECT key FROM outbox_sent WHERE dest = ? AND key IN ({marks}) AND expires > ?", (now,)),
            ):
                known.update((dest, bytes(row[0])) for row in conn.execute(sql, (dest, *chunk, *extra)))
    return known


#: an outbox row's insert, without its VALUES (``insert_rows``; ``_outbound_row`` gives a row)
_INSERT_OUTBOUND = f"INSERT INTO outbox (dest, key, expires, data, queued_at, size, origin, {_TRACKING_COLUMNS})"


def _outbound_row(
    item: OutboundItem, now: int, charges: Charges | None, sender: tuple[str, int] | None, usage: UsageChanges
) -> tuple[Any, ...]:
    """The outbox row of ``item``, its bytes added to ``charges`` and ``usage``."""
    t = item.tracking
    tracking = ((*sender, None, None, None) if sender else (None,) * 5) if t is None else (t.sender_account, t.sender_device, t.id, t.account, t.device)
    usage.outbox_row(1, item.dest, len(item.data), item.origin, tracking[0], tracking[1])
    if charges is not None:
        sender = sender if t is None else (t.sender_account, t.sender_device)
        charges.queued(item.dest, len(item.data), origin=item.origin, sender=sender)
    return (item.dest, item.key, item.expires, item.data, now, len(item.data), item.origin, *tracking)


def _queue_outbound(
    conn: Connection,
    item: OutboundItem,
    now: int,
    charges: Charges | None = None,
    *,
    sender: tuple[str, int] | None = None,
    usage: UsageChanges,
) -> None:
    """Queue an unexpired item, unless its (dest, key) is queued or was handed on and is
    still remembered. What is queued is added to ``charges`` (None: it is never refused, e.g.
    a report). ``sender``: the local device an untracked item counts towards (a group SUBMIT),
    like a tracked one. A tracked item's outbox row is its "queued" delivery state: its
    delivery row is written when it leaves the outbox (``_outbox_done``), in its final state
    when it has one, so an envelope costs one delivery-row write, not an insert and an update.
    ``usage``: where the write sums what its rows add to storage_usage (the caller applies it
    before ``enforce``)."""
    key = (item.dest, item.key)
    log = log_of(conn)
    queued = log.queued(*key) if log is not None else conn.execute("SELECT 1 FROM outbox WHERE dest = ? AND key = ?", key).fetchone()
    if queued or conn.execute("SELECT 1 FROM outbox_sent WHERE dest = ? AND key = ? AND expires > ?", (*key, now)).fetchone():
        return
    _insert_outbound(conn, [_outbound_row(item, now, charges, sender, usage)], capped=charges is not None)


def _insert_outbound(conn: Connection, rows: list[tuple[Any, ...]], *, capped: bool) -> None:
    """Queue outbox rows (``_outbound_row``'s): into the table, or the log's batches (one per
    destination, in their order). ``capped``: refused (OverBudget) past the items the log keeps
    in memory (``outbox_log.MAX_ITEMS``), as every write whose items are charged to a budget;
    reports and a hub's fan-out are not (they are refused nowhere else either)."""
    log = log_of(conn)
    if log is None:
        insert_rows(conn, _INSERT_OUTBOUND, rows)
        return
    by_dest: dict[str, list[tuple[Logged, bytes]]] = {}
    for dest, key, expires, data, queued_at, size, origin, sa, sd, id_, account, device in rows:
        item = Logged(0, dest, key, expires, queued_at, size, origin, sa, sd, id_, account, device)
        by_dest.setdefault(dest, []).append((item, data))
    for dest, items in by_dest.items():
        log.append(conn, dest, items, capped=capped)


def _queue_outbound_batch(
    conn: Connection, items: list[OutboundItem], now: int, charges: Charges, usage: UsageChanges
) -> None:
    """``_queue_outbound`` for a batch of unexpired items: which are known asked with two
    queries per destination and 500 keys, the new ones inserted by ``insert_rows``."""
    known = _queued_or_sent(conn, items, now)
    rows = []
    for item in items:
        key = (item.dest, item.key)
        if key not in known:
            known.add(key)
            rows.append(_outbound_row(item, now, charges, None, usage))
    _insert_outbound(conn, rows, capped=True)


#: what a tracked outbox row (an envelope a local device sent) says of its delivery row:
#: sender, the match key (id, dest, device), and its envelope's expiry and queue time
_TRACKED = "sender_account, sender_device, id, dest, device, expires, queued_at"

#: a delivery row as the tracked outbox row ``o`` (its "queued" state) left it; ``vanishes``:
#: a disappearing message's row goes at its envelope's expiry, whatever its state
#: (node/store/vanishing.py): no node keeps its id past its time. The row names the
#: recipient's node and device number, never the recipient account: this node does not keep a
#: record of whom its users write to (docs/security.md).
_DELIVERY_COLUMNS = "sender_account, sender_device, id, dest, device, state, code, updated_at, expires, vanishes"


def _vanishes(expires: int, queued_at: int) -> int | None:
    return expires if is_short_lived(expires, queued_at) else None


def _apply_statuses(conn: Connection, statuses: Sequence[StatusUpdate]) -> None:
    # A final row is kept DELIVERY_GRACE_MS after it became final (its ``expires`` drops to
    # then), not after the envelope's own expiry: long enough for the sending device to ask.
    conn.executemany(
        "UPDATE deliveries SET state = ?, code = ?, updated_at = ?, expires = CASE WHEN expires < ? THEN expires ELSE ? END"
        " WHERE id = ? AND dest = ? AND device = ? AND state = 'queued'",
        [(s.state, s.code, s.at, s.at, s.at, s.id, s.account.rpartition("@")[2], s.device) for s in statuses],
    )


def _apply_report(conn: Connection, status: StatusUpdate) -> None:
    """A peer's report about an envelope this node sent. While the envelope's item is still
    in this node's outbox nobody downstream can have received it from us: the report is only
    kept aside on the delivery row (``_take_early_reports`` applies it once the item is handed
    on), so a destination cannot settle what it never received."""
    if status.state not in ("accepted", "failed"):
        raise StoreError(f"invalid delivery state {status.state!r}")
    where = (status.id, status.account.rpartition("@")[2], status.device)
    log = log_of(conn)
    if log is None:
        queued = conn.execute(
            f"SELECT {_TRACKED} FROM outbox WHERE id = ? AND dest = ? AND device = ? AND sender_account IS NOT NULL ORDER BY seq LIMIT 1",
            where,
        ).fetchone()
    else:
        first = log.first_tracked(*where)
        queued = None if first is None else first.tracked_row()
    if queued is None:
        _apply_statuses(conn, [status])
        return
    *row, expires, queued_at = queued
    conn.execute(
        f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}, early_state, early_code, early_at)"
        " VALUES (?, ?, ?, ?, ?, 'queued', '', ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (sender_account, sender_device, id, dest, device) DO UPDATE"
        " SET early_state = excluded.early_state, early_code = excluded.early_code, early_at = excluded.early_at"
        " WHERE deliveries.state = 'queued'",
        (*row, queued_at, expires, _vanishes(expires, queued_at), status.state, status.code, status.at),
    )


def _take_early_reports(conn: Connection, handed_on: list[tuple[Any, ...]]) -> None:
    """Apply the reports kept aside for the items ``handed_on`` ((id, dest, device) of items
    just deleted from the outbox) whose delivery rows are still "queued"."""
    conn.executemany(
        "UPDATE deliveries SET state = early_state, code = early_code, updated_at = early_at,"
        " expires = CASE WHEN expires < early_at THEN expires ELSE early_at END, early_state = NULL, early_code = NULL, early_at = NULL"
        " WHERE id = ? AND dest = ? AND device = ? AND state = 'queued' AND early_state IS NOT NULL",
        handed_on,
    )


class _Mailboxes:
    """What one ``receive`` learns about the mailboxes its envelopes go to, asked once per
    mailbox rather than per item: whether it exists, which of the push's ids it knows
    already, and its usage -- kept up to date as the items before each one are stored (a push
    usually fills one or a few mailboxes)."""

    def __init__(self, conn: Connection, now: int, envelopes: list[NewEnvelope]) -> None:
        self._conn = conn
        self._now = now
        self._exists: dict[tuple[str, int], str] = {}
        self._usage: dict[tuple[str, int], tuple[int, int]] = {}
        self._known = _known(conn, envelopes, now)

    def known(self, env: NewEnvelope) -> bool:
        """In the mailbox (stored before, or earlier in this push) or acknowledged there."""
        return (env.account, env.device_id, env.id) in self._known

    def refusal(self, account: str, device_id: int) -> str:
        """"" when the mailbox exists, else why not."""
        key = (account, device_id)
        if key not in self._exists:
            if not self._conn.execute("SELECT 1 FROM accounts WHERE account = ?", (account,)).fetchone():
                self._exists[key] = "unknown_account"
            else:
                self._exists[key] = "" if _device_exists(self._conn, account, device_id) else "unknown_device"
        return self._exists[key]

    def usage(self, account: str, device_id: int) -> tuple[int, int]:
        key = (account, device_id)
        if key not in self._usage:
            self._usage[key] = _mailbox_usage(self._conn, account, device_id, self._now)
        return self._usage[key]

    def added(self, env: NewEnvelope) -> None:
        count, total = self.usage(env.account, env.device_id)
        self._usage[(env.account, env.device_id)] = (count + 1, total + len(env.body))
        self._known.add((env.account, env.device_id, env.id))


def _receive_envelope(
    env: NewEnvelope, now: int, quota: Quota, mailboxes: _Mailboxes, charges: Charges, rows: list[tuple[Any, ...]]
) -> str:
    """The outcome for ``env``; a row to store goes to ``rows`` (inserted by the caller)."""
    refusal = mailboxes.refusal(env.account, env.device_id)
    if refusal:
        return refusal
    if env.expires <= now:
        return "expired"
    if mailboxes.known(env):
        return OK  # a retransmission: taken before, even if the mailbox is full now
    # Per item, after the items before it in this push were stored: each gets its own answer.
    count, size = mailboxes.usage(env.account, env.device_id)
    if count + 1 > quota.max_envelopes or size + len(env.body) > quota.max_bytes:
        return "mailbox_full"
    rows.append(_envelope_row(env, now))
    charges.stored(len(env.body))
    mailboxes.added(env)
    return OK


def _receive(conn: Connection, items: list[Inbound], now: int, quota: Quota, disk_free: DiskFree) -> list[str]:
    outcomes: list[str] = []
    charges = Charges()
    usage = UsageChanges()
    mailboxes = _Mailboxes(conn, now, [i for i in items if isinstance(i, NewEnvelope)])
    # Envelopes are inserted in runs (``insert_rows``, in push order, so seq follows it), each
    # before any other kind of item, which then sees them stored.
    rows: list[tuple[Any, ...]] = []
    counts = MailboxCounts()
    groups: list[tuple[int, GroupReceived]] = []  # (position, item): applied after the others
    for item in items:
        if isinstance(item, GroupReceived):
            groups.append((len(outcomes), item))
            outcomes.append("")
            continue
        if rows and not isinstance(item, NewEnvelope):
            _insert_envelopes(conn, rows, counts)
            rows.clear()
        if isinstance(item, StatusUpdate):
            _apply_report(conn, item)
            outcomes.append(OK)
        elif isinstance(item, OutboundItem):
            if item.expires <= now:
                outcomes.append("expired")
            else:
                _queue_outbound(conn, item, now, charges, usage=usage)
                outcomes.append(OK)
        else:
            outcomes.append(_receive_envelope(item, now, quota, mailboxes, charges, rows))
    _insert_envelopes(conn, rows, counts)
    counts.apply(conn)  # before the group items, whose allowance reads the counters
    if groups:
        from .sqlite_groups import _receive_group  # (it builds on this module)

        # Group by group, in the order of their ids (a group's own items in push order: the
        # sort is stable): ordering a submission locks its group's rows (hosted_groups,
        # member_groups), and two pushes at once on PostgreSQL naming two groups in opposite
        # orders would lock them in opposite orders and deadlock (1 s to detect, then retried).
        # Items of different groups, and the other kinds, do not depend on each other's order.
        for position, group_item in sorted(groups, key=lambda g: g[1].item.group):
            outcomes[position] = _receive_group(conn, group_item, now, quota, charges, usage)
    # Over a budget the whole push is undone (OverBudget): the peer keeps the items and
    # pushes them again later, when there is room; nothing it sent is lost.
    usage.apply(conn)
    enforce(conn, quota, charges, disk_free)
    return outcomes


def _outbox(conn: Connection, dest: str, limit: int, max_bytes: int, now: int, after: int) -> Page[QueuedItem]:
    return _read_queue(
        conn,
        f"SELECT {QUEUED_COLUMNS} FROM outbox WHERE dest = ? AND seq > ? AND expires > ? ORDER BY seq LIMIT ?",
        (dest, after, now, limit),
        limit,
        max_bytes,
    )


def _expired_outbox(conn: Connection, dest: str, limit: int, max_bytes: int, now: int) -> Page[QueuedItem]:
    # By the expiry index: expired items are few (their workers settle them every interval),
    # whereas a destination that is down may have a long queue.
    return _read_queue(
        conn,
        f"SELECT {QUEUED_COLUMNS} FROM outbox INDEXED BY outbox_expiry WHERE expires <= ? AND dest = ? ORDER BY seq LIMIT ?",
        (now, dest, limit),
        limit,
        max_bytes,
    )


def _read_queue(conn: Connection, sql: str, params: tuple[Any, ...], limit: int, max_bytes: int) -> Page[QueuedItem]:
    items: Page[QueuedItem] = Page()
    total = 0
    with closing(conn.execute(sql, params)) as rows:
        for row in rows:  # fetched one by one: rows past the byte cap are never read
            item = queued_item(row)
            total += len(item.data)
            if items and total > max_bytes:
                return items
            items.append(item)
    items.complete = len(items) < limit
    return items


def _outbox_done(
    conn: Connection,
    dest: str,
    seqs: list[int],
    now: int,
    statuses: list[StatusUpdate],
    reports: list[OutboundItem],
    failed: dict[int, str] | None = None,
) -> None:
    # One DELETE ... RETURNING per 500 items: each row found once, not once per question
    # (dedup key, delivery row, delete) and once per trigger.
    usage = UsageChanges()
    deleted = _take_outbound(conn, dest, seqs)
    # The keys of items handed on are remembered until they expire (an expired item needs no
    # deduplication): a retransmission from upstream is then answered "ok" but not queued again.
    # Only items that came from upstream (sender_account NULL): this node's own devices'
    # envelopes have no upstream to retransmit them, and their keys name the recipient.
    insert_rows(  # (each key once: (dest, key) is unique in the outbox)
        conn,
        "INSERT INTO outbox_sent (dest, key, expires)",
        [(dest, key, expires) for _, key, _, _, sender, _, _, _, _, expires, _ in deleted if sender is None and expires > now],
        " ON CONFLICT (dest, key) DO UPDATE SET expires = excluded.expires",
    )
    tracked: list[tuple[Any, ...]] = []
    failures: dict[tuple[bytes, str, int], str] = {}  # (id, node, device) -> code, from ``failed``'s seqs
    for row in deleted:
        seq, _, size, origin, sender_account, sender_device, id_, node, device = row[:9]
        usage.outbox_row(-1, dest, size, origin, sender_account, sender_device)
        if sender_account is not None:
            tracked.append(tuple(row[4:]))
            if failed and seq in failed and id_ is not None:
                failures.setdefault((bytes(id_), node, device), failed[seq])
    _settle_tracked(conn, tracked, statuses, now, failures)
    for item in reports:
        if item.expires > now:
            _queue_outbound(conn, item, now, usage=usage)
    usage.apply(conn)


def _take_outbound(conn: Connection, dest: str, seqs: list[int]) -> list[tuple[Any, ...]]:
    """Take the queued items of ``dest`` among ``seqs`` out of the outbox: (seq, key, size,
    origin, *``_TRACKED``) each, in queue order (the first item per (node, device) speaks)."""
    log = log_of(conn)
    if log is not None:
        return [
            (item.seq, item.key, item.size, item.origin, *_tracked_row(item, tracked))
            for item, tracked in log.take(conn, dest, seqs)
        ]
    deleted: list[tuple[Any, ...]] = []
    for start in range(0, len(seqs), _KEYS_PER_QUERY):
        chunk = seqs[start : start + _KEYS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        deleted.extend(
            conn.execute(
                f"DELETE FROM outbox WHERE dest = ? AND seq IN ({marks})"
                f" RETURNING seq, key, size, origin, {_TRACKED}",
                (dest, *chunk),
            ).fetchall()
        )
    deleted.sort(key=lambda row: row[0])
    return deleted


def _tracked_row(item: Logged, tracked: bool) -> tuple[Any, ...]:
    """``_TRACKED`` of a logged item, as the table's row would say it (a disappearing message
    that expired while queued has lost its id: ``_drop_vanished_deliveries``)."""
    row = item.tracked_row()
    return row if tracked else (*row[:2], None, *row[3:])


def _settle_tracked(
    conn: Connection,
    tracked: list[tuple[Any, ...]],
    statuses: list[StatusUpdate],
    now: int,
    failures: dict[tuple[bytes, str, int], str],
) -> None:
    """Write the delivery rows of the tracked items just deleted from the outbox (rows of
    ``_TRACKED``): failed with the code ``failures`` has for one ((id, node, device) -> code),
    else in their final state where ``statuses`` has one (a row the envelope already has
    keeps a final state: final states stay final), else "queued" (handed to a relay, whose
    report settles it), with a report kept aside for it applied now. Statuses for no such item
    update the rows they name, as reports do."""
    final = {(s.id, s.account.rpartition("@")[2], s.device): s for s in statuses}
    settled: list[tuple[Any, ...]] = []
    handed_on: list[tuple[Any, ...]] = []
    for sender_account, sender_device, id_, dest, device, expires, queued_at in tracked:
        if id_ is None:
            continue  # no envelope to tell about (a group item), or a disappearing one now gone
        vanishes = _vanishes(expires, queued_at)  # past already: the next purge drops it, as any
        key = (bytes(id_), dest, device)
        s = final.pop(key, None)
        code = failures.pop(key, None)
        if code is not None:  # never went out: nobody else will settle it
            settled.append((sender_account, sender_device, *key, "failed", code, now, min(expires, now), vanishes))
        elif s is None:
            handed_on.append((sender_account, sender_device, *key, "queued", "", queued_at, expires, vanishes))
        else:
            # A final row is kept DELIVERY_GRACE_MS after it became final (its ``expires``
            # drops to then), not after the envelope's own expiry: long enough for the sender.
            settled.append((sender_account, sender_device, *key, s.state, s.code, s.at, min(expires, s.at), vanishes))
    target = "(sender_account, sender_device, id, dest, device)"
    insert_rows(  # (each key once: popped from ``final``)
        conn,
        f"INSERT INTO deliveries ({_DELIVERY_COLUMNS})",
        settled,
        f" ON CONFLICT {target} DO UPDATE"
        " SET state = excluded.state, code = excluded.code, updated_at = excluded.updated_at,"
        " expires = CASE WHEN deliveries.expires < excluded.updated_at THEN deliveries.expires ELSE excluded.updated_at END"
        " WHERE deliveries.state = 'queued'",
    )
    insert_rows(conn, f"INSERT INTO deliveries ({_DELIVERY_COLUMNS})", handed_on, f" ON CONFLICT {target} DO NOTHING")
    _take_early_reports(conn, [row[2:5] for row in handed_on])  # items handed to a relay: no status of their own
    _apply_statuses(conn, list(final.values()))


def _outbox_counts(conn: Connection) -> dict[str, int]:
    log = log_of(conn)
    if log is not None:
        return log.counts()
    return dict(conn.execute("SELECT dest, count(*) FROM outbox GROUP BY dest").fetchall())


def _deliveries(
    conn: Connection,
    sender_account: str,
    sender_device: int,
    ids: list[bytes],
    queued_items: list[tuple[bytes, str, int, int, int]] | None = None,
) -> list[DeliveryRow]:
    """``queued_items``: the device's queued items among ``ids`` ((id, dest, device, queued_at,
    expires) in queue order) where the store knows its outboxes from memory (outbox_log.py,
    asked on the trio thread before this read); else they are read from the outbox table."""
    # Two queries per 500 ids (a device asks for a batch's ids at once), not two per id.
    found: dict[bytes, dict[tuple[str, int], tuple[Any, ...]]] = {id_: {} for id_ in ids}
    for start in range(0, len(ids), _KEYS_PER_QUERY):
        chunk = ids[start : start + _KEYS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        params = (*chunk, sender_account, sender_device)
        for id_, dest, device, state, code, updated_at, expires in conn.execute(
            "SELECT id, dest, device, state, code, updated_at, expires FROM deliveries"
            f" WHERE id IN ({marks}) AND sender_account = ? AND sender_device = ?",
            params,
        ):
            found[bytes(id_)][(dest, device)] = (state, code, updated_at, expires)
        # An item still queued has no row of its own yet (its outbox row is its state); of
        # several items for one (node, device), the first queued says it, as its row would.
        if queued_items is None:
            for id_, dest, device, updated_at, expires in conn.execute(
                "SELECT id, dest, device, queued_at, expires FROM outbox"
                f" WHERE id IN ({marks}) AND sender_account = ? AND sender_device = ? ORDER BY seq",
                params,
            ):
                found[bytes(id_)].setdefault((dest, device), ("queued", "", updated_at, expires))
    for id_, dest, device, updated_at, expires in queued_items or ():
        found[id_].setdefault((dest, device), ("queued", "", updated_at, expires))
    return [
        DeliveryRow(
            sender_account=sender_account,
            sender_device=sender_device,
            id=id_,
            device=device,
            dest=dest,
            state=state,
            code=code,
            updated_at=updated_at,
            expires=expires,
        )
        for id_ in ids  # sorted: bytes order is SQLite's BLOB order
        for (dest, device), (state, code, updated_at, expires) in sorted(found[id_].items())
    ]


def _drop_vanished_deliveries(conn: Connection, now: int) -> None:
    """The delivery rows of disappearing messages whose envelopes expired by ``now``, and the
    "queued" state of those still in the outbox (their id: the item stays, untracked, for its
    worker to settle, which then writes no row)."""
    conn.execute("DELETE FROM deliveries WHERE vanishes IS NOT NULL AND vanishes <= ?", (now,))
    log = log_of(conn)
    if log is not None:
        log.untrack_vanished(conn, now)
        return
    conn.execute(
        "UPDATE outbox SET id = NULL WHERE expires <= ? AND id IS NOT NULL AND expires - queued_at < ?",
        (now, SHORT_LIVED_MS),
    )


def _expire_outbox(conn: Connection, now: int) -> None:
    # Expired outbox items are not touched here: their destination's worker settles them
    # (``_expired_outbox`` + ``_outbox_done``), so none is expired behind a push in flight.
    conn.execute("DELETE FROM outbox_sent WHERE expires <= ?", (now,))
    conn.execute("DELETE FROM deliveries WHERE expires <= ?", (now - DELIVERY_GRACE_MS,))
