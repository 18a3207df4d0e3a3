"""The mailbox half of the SQLite backend: per-device envelope storage, deduplication by id
(``mailbox`` + ``acked_ids``), quota usage, delivery to the device, acknowledgement and expiry.

Plain functions of a connection, like the rest of the backend: ``SqliteStore`` (``sqlite.py``) runs
each on its worker thread, inside the transaction it opens where the function writes. The
primitives here (device check, deduplication, quota usage, the envelope insert) are shared by
``enqueue`` (``sqlite.py``), what peers push (``receive``, ``sqlite_federation.py``) and prekey
publication (``sqlite_prekeys.py``); this module imports no other part of the backend.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

from sonet.core.envelope import Kind

from .dialect import Connection, insert_rows
from .base import MailboxItem, NewEnvelope, Page, Quota, QuotaExceeded, StoreError
from .sqlite_budgets import Charges
from .vanishing import SHORT_LIVED_MS

__all__: list[str] = []  # private to the SQLite backend; SqliteStore is the public face

Mailbox = tuple[str, int]


# Primitives --------------------------------------------------------------------------------

def _device_exists(conn: Connection, account: str, device_id: int) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM devices WHERE account = ? AND device_id = ?", (account, device_id)
        ).fetchone()
        is not None
    )


#: ids per ``IN (...)`` query (SQLite allows 32,766 parameters)
_IDS_PER_QUERY = 500


def _known(conn: Connection, envelopes: list[NewEnvelope], now: int) -> set[tuple[str, int, bytes]]:
    """The (account, device, id) of ``envelopes`` their mailboxes know: stored there, or
    acknowledged there and not yet expired (a retransmission of those is not stored again).
    Two queries per mailbox and 500 ids."""
    ids_by_mailbox: dict[Mailbox, list[bytes]] = {}
    for e in envelopes:
        ids_by_mailbox.setdefault((e.account, e.device_id), []).append(e.id)
    known: set[tuple[str, int, bytes]] = set()
    for (account, device_id), ids in ids_by_mailbox.items():
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start : start + _IDS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            for sql, extra in (
                (f"SELECT id FROM mailbox WHERE account = ? AND device_id = ? AND id IN ({marks})", ()),
                (f"SELECT id FROM acked_ids WHERE account = ? AND device_id = ? AND id IN ({marks}) AND expires > ?", (now,)),
            ):
                rows = conn.execute(sql, (account, device_id, *chunk, *extra))
                known.update((account, device_id, bytes(row[0])) for row in rows)
    return known


def _mailbox_usage(conn: Connection, account: str, device_id: int, now: int, *, group: bool = False) -> tuple[int, int]:
    """The count and body bytes of the mailbox's unexpired envelopes (what the quota counts):
    its rows other than group items (Kind.GROUP: their own allowance, sqlite_groups.py), or
    (``group``) only its group items.

    O(1) + O(expired rows not yet purged): ``mailbox_counts`` holds every row of the mailbox
    per kind (migration 23; ``MailboxCounts``), from which the rows of each kind that expired
    but are still here are taken -- one range of ``mailbox_group_usage`` per kind the mailbox
    holds, normally empty -- so the answer is that of a count of the unexpired rows."""
    count = size = 0
    for held, held_bytes, expired, expired_bytes in conn.execute(
        "SELECT c.count, c.bytes, count(m.kind), coalesce(sum(m.size), 0) FROM mailbox_counts c"
        " LEFT JOIN mailbox m ON m.account = c.account AND m.device_id = c.device_id AND m.kind = c.kind AND m.expires <= ?"
        f" WHERE c.account = ? AND c.device_id = ? AND c.kind {'=' if group else '!='} {int(Kind.GROUP)}"
        " GROUP BY c.kind, c.count, c.bytes",
        (now, account, device_id),
    ):
        count += held - expired
        size += held_bytes - expired_bytes
    return count, size


class MailboxCounts:
    """What one write adds to (or, negative, takes from) ``mailbox_counts`` for the mailbox rows
    it stores or deletes: summed per (account, device, kind), written once by ``apply``. Every write that stores or deletes mailbox rows counts them here, in its
    transaction; the rows that go with their device (ON DELETE CASCADE) take its counters
    with them (their foreign key), so no trigger per row is needed."""

    __slots__ = ("_sums",)

    def __init__(self) -> None:
        self._sums: dict[tuple[str, int, int], list[int]] = {}

    def add(self, account: str, device_id: int, kind: int, rows: int, size: int) -> None:
        """``rows`` rows of ``size`` body bytes in all stored (negative: deleted)."""
        sums = self._sums.get((account, device_id, kind))
        if sums is None:
            self._sums[(account, device_id, kind)] = [rows, size]
        else:
            sums[0] += rows
            sums[1] += size

    def apply(self, conn: Connection) -> None:
        """Write the sums and start again from none. In key order (as ``UsageChanges.apply``):
        two writes on PostgreSQL that update the same counters queue behind each other rather
        than lock them in opposite orders."""
        conn.executemany(
            "INSERT INTO mailbox_counts (account, device_id, kind, count, bytes) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (account, device_id, kind) DO UPDATE"
            " SET count = mailbox_counts.count + excluded.count, bytes = mailbox_counts.bytes + excluded.bytes",
            [(*key, n, size) for key, (n, size) in sorted(self._sums.items()) if n or size],
        )
        self._sums.clear()


#: a mailbox row's insert, without its VALUES (``insert_rows``; ``_envelope_row`` gives a row)
_INSERT_ENVELOPE = (
    "INSERT INTO mailbox (account, device_id, id, expires, kind, body, size, stored_at, sender_account, sender_device)"
)


def _envelope_row(e: NewEnvelope, now: int, sender: tuple[str, int] | None = None) -> tuple[Any, ...]:
    """``sender``: the local device whose stored-bytes budget the envelope counts towards
    (None for what peers push: their envelopes name no sender here)."""
    sender_account, sender_device = sender if sender is not None else (None, None)
    return (e.account, e.device_id, e.id, e.expires, e.kind, e.body, len(e.body), now, sender_account, sender_device)


def _insert_envelopes(conn: Connection, rows: list[tuple[Any, ...]], counts: MailboxCounts) -> None:
    """Store ``rows`` (``_envelope_row``), in order, and count them in ``counts``."""
    insert_rows(conn, _INSERT_ENVELOPE, rows)
    for account, device_id, _, _, kind, _, size, *_ in rows:
        counts.add(account, device_id, kind, 1, size)


# Enqueue, pending, ack, purge --------------------------------------------------------------

def _store_envelopes(
    conn: Connection, batch: list[NewEnvelope], now: int, quota: Quota, sender: tuple[str, int] | None, charges: Charges
) -> int:
    """The mailbox part of ``enqueue``: all or nothing, quota checked per receiving mailbox;
    what ``sender`` now stores is added to ``charges`` (the caller enforces the budgets)."""
    # Keep the first of several envelopes with the same id in one mailbox: it counts once.
    unique: dict[tuple[str, int, bytes], NewEnvelope] = {}
    for env in batch:
        unique.setdefault((env.account, env.device_id, env.id), env)

    mailboxes = dict.fromkeys((env.account, env.device_id) for env in unique.values())
    for account, device_id in mailboxes:
        if not _device_exists(conn, account, device_id):
            raise StoreError(f"no mailbox for device {device_id} of {account!r}")

    # An envelope already expired on arrival could never be delivered: it is not stored.
    unexpired = [e for e in unique.values() if e.expires > now]
    known = _known(conn, unexpired, now)
    fresh = [e for e in unexpired if (e.account, e.device_id, e.id) not in known]

    # Only mailboxes that receive something are checked: a retransmission of envelopes that
    # are already stored is accepted (as duplicates) even when their mailbox is full.
    added: dict[Mailbox, tuple[int, int]] = {}
    for e in fresh:
        count, size = added.get((e.account, e.device_id), (0, 0))
        added[(e.account, e.device_id)] = (count + 1, size + len(e.body))
    for (account, device_id), (add_count, add_size) in added.items():
        count, size = _mailbox_usage(conn, account, device_id, now)
        if count + add_count > quota.max_envelopes or size + add_size > quota.max_bytes:
            raise QuotaExceeded(f"mailbox of device {device_id} of {account!r} is full")

    # Inserted in batch order, so seq follows the order the sender gave.
    counts = MailboxCounts()
    _insert_envelopes(conn, [_envelope_row(e, now, sender) for e in fresh], counts)
    counts.apply(conn)
    for e in fresh:
        if sender is not None:
            charges.sender(*sender, len(e.body))
        else:
            charges.stored(len(e.body))  # the disk reserve counts it all the same
    return len(fresh)


#: a row's body: its own, or the group item body it shares with other mailboxes (sqlite_group_bodies.py)
_PENDING_BODY = "CASE WHEN body_ref IS NULL THEN body ELSE (SELECT body FROM group_bodies WHERE id = body_ref) END"

#: a mailbox item's columns as its readers read them (also tail_capture.py)
PENDING_COLUMNS = f"seq, id, expires, kind, {_PENDING_BODY}, stored_at"


def mailbox_item(row: tuple[Any, ...]) -> MailboxItem:
    seq, id_, expires, kind, body, at = row
    return MailboxItem(seq=seq, id=bytes(id_), expires=expires, kind=kind, body=bytes(body), stored_at=at)


def _pending(
    conn: Connection, account: str, device_id: int, after_seq: int, limit: int, now: int, max_bytes: int | None
) -> Page[MailboxItem]:
    items: Page[MailboxItem] = Page()
    total = 0
    with closing(
        conn.execute(
            f"SELECT {PENDING_COLUMNS} FROM mailbox"
            " WHERE account = ? AND device_id = ? AND seq > ? AND expires > ?"
            " ORDER BY seq LIMIT ?",
            (account, device_id, after_seq, now, limit),
        )
    ) as rows:
        for row in rows:  # one by one: rows past the cap are never read
            item = mailbox_item(row)
            total += len(item.body)
            if items and max_bytes is not None and total > max_bytes:
                return items
            items.append(item)
    items.complete = len(items) < limit
    return items


#: an acknowledged id is kept until the end of the (UTC) day its envelope expires: the expiry to
#: the millisecond would tell when each message arrived, and dedup needs no finer time. A
#: disappearing message's id goes at its envelope's expiry instead (node/store/vanishing.py):
#: a replay after it is refused as expired, and no node keeps the id past the message's time.
ACKED_ID_GRANULARITY_MS = 24 * 3600 * 1000

#: the acked ids with an expiry to the ms (short-lived ones), the only ones indexed by expiry
#: (``acked_ids_vanishing``; the others are found by their day in ``acked_days``: migration 22)
SHORT_LIVED_ACKED = f"expires % {ACKED_ID_GRANULARITY_MS} != 0"


def _acked_id_expiry(expires: int, stored_at: int) -> int:
    if expires - stored_at < SHORT_LIVED_MS:
        return expires
    return (expires + ACKED_ID_GRANULARITY_MS - 1) // ACKED_ID_GRANULARITY_MS * ACKED_ID_GRANULARITY_MS


def _ack(conn: Connection, account: str, device_id: int, ids: list[bytes], now: int) -> int:
    unique_ids = list(dict.fromkeys(ids))  # an id listed twice counts once
    # Delete the rows, one statement per 500 ids, and remember the ids of the unexpired ones
    # (expired ones need no dedup): each row is found once, not once to copy and once to delete.
    remembered: list[tuple[str, int, bytes, int]] = []
    counts = MailboxCounts()
    for start in range(0, len(unique_ids), _IDS_PER_QUERY):
        chunk = unique_ids[start : start + _IDS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"DELETE FROM mailbox WHERE account = ? AND device_id = ? AND id IN ({marks}) RETURNING id, expires, stored_at, kind, size",
            (account, device_id, *chunk),
        ).fetchall()
        remembered.extend(
            (account, device_id, bytes(id_), _acked_id_expiry(expires, stored_at)) for id_, expires, stored_at, _, _ in rows if expires > now
        )
        for *_, kind, size in rows:
            counts.add(account, device_id, kind, -1, -size)
    insert_rows(  # (each id once: deduplicated above)
        conn,
        "INSERT INTO acked_ids (account, device_id, id, expires)",
        remembered,
        " ON CONFLICT (account, device_id, id) DO UPDATE SET expires = excluded.expires",
    )
    days = {expires for *_, expires in remembered if expires % ACKED_ID_GRANULARITY_MS == 0}
    conn.executemany("INSERT INTO acked_days (expires) VALUES (?) ON CONFLICT DO NOTHING", [(day,) for day in sorted(days)])
    counts.apply(conn)  # last: on PostgreSQL a push into this mailbox waits on its counter until the commit
    return len(remembered)


#: mailbox rows deleted per statement where many may go at once (a device's removal; the purge,
#: a transaction each), and their body bytes at most: SQLite keeps a statement's journal in
#: memory (``temp_store``, sqlite.py), and it holds what the statement deletes (one DELETE of
#: 300,000 expired rows of 1 KiB peaked at 505 MB; docs/performance.md round 17). Acked ids of a
#: removed device: rows per statement.
PURGE_ROWS = 1000
PURGE_BYTES = 8 * 1024 * 1024
PURGE_ACKED_IDS = 10_000


def _purge_expired_mail(conn: Connection, now: int) -> tuple[int, bool]:
    """One chunk (``_chunk``) of the expired mailbox rows, with what the counters lose: how many
    went, and whether a cap cut the chunk (more may be left). A chunk per transaction
    (``SqliteStore.purge_expired``): 300,000 rows expiring at once held every other write for
    3.2 s as one transaction."""
    seqs, cut = _chunk(conn, "expires <= ?", (now,), "expires")
    if not seqs:
        return 0, False
    marks = ",".join("?" * len(seqs))
    # Summed by the database before the delete, not row by row from a RETURNING: as cheap as
    # the delete alone (100,000 rows: +0-10% CPU, against +10-50%).
    # Rows of a device that is gone (an SQLite file once written without foreign keys) were never
    # counted (migration 23): they go, but take nothing from a counter.
    counts = MailboxCounts()
    for account, device_id, kind, n, size in conn.execute(
        f"SELECT account, device_id, kind, count(*), sum(size) FROM mailbox WHERE seq IN ({marks}) GROUP BY account, device_id, kind"
        " HAVING EXISTS (SELECT 1 FROM devices d WHERE d.account = mailbox.account AND d.device_id = mailbox.device_id)",
        seqs,
    ).fetchall():
        counts.add(account, device_id, kind, -n, -size)
    counts.apply(conn)
    return _delete_rows(conn, seqs), cut


def _purge_expired_records(conn: Connection, now: int) -> None:
    """The expired dedup records and invites (the mail goes by ``_purge_expired_mail``)."""
    _purge_acked_ids(conn, now)
    # An expired invite can never be used again; forgetting it makes no difference to
    # register_account (unknown and expired are both InviteInvalid) and keeps stats() honest.
    conn.execute("DELETE FROM invites WHERE expires_at <= ?", (now,))


def _delete_in_chunks(conn: Connection, where: str, params: tuple[Any, ...], order: str) -> int:
    """Delete the mailbox rows ``where`` selects (taken in ``order``, the columns an index of
    that selection is ordered by), a chunk (``_chunk``) per statement; how many went."""
    dropped = 0
    while True:
        seqs, cut = _chunk(conn, where, params, order)
        dropped += _delete_rows(conn, seqs)
        if not cut:
            return dropped


def _delete_rows(conn: Connection, seqs: list[int]) -> int:
    """Delete the mailbox rows ``seqs`` (one chunk: ``_chunk``); how many there were."""
    if not seqs:
        return 0
    return int(conn.execute(f"DELETE FROM mailbox WHERE seq IN ({','.join('?' * len(seqs))})", seqs).rowcount)


def _chunk(conn: Connection, where: str, params: tuple[Any, ...], order: str) -> tuple[list[int], bool]:
    """The seqs of the next rows to delete: PURGE_ROWS at most, and no more than PURGE_BYTES of
    bodies unless one row alone is larger; and whether a cap cut them (more may be left)."""
    seqs: list[int] = []
    total = 0
    rows = conn.execute(f"SELECT seq, size FROM mailbox WHERE {where} ORDER BY {order} LIMIT ?", (*params, PURGE_ROWS)).fetchall()
    for seq, size in rows:
        total += size
        if seqs and total > PURGE_BYTES:
            return seqs, True
        seqs.append(seq)
    return seqs, len(rows) == PURGE_ROWS


def _drop_device_mail(conn: Connection, account: str, device_id: int) -> None:
    """Before a device's row is deleted: its mailbox rows and acked ids, in chunks (its row's
    ON DELETE CASCADE would else delete them in that one statement, journaled in memory whole:
    a device with 200 MB of mail took the node to 347 MB). Their triggers release what they
    held, as the cascade's would; its ``mailbox_counts`` rows go with its row."""
    _delete_in_chunks(conn, "account = ? AND device_id = ?", (account, device_id), "account, device_id, seq")
    while conn.execute(
        "DELETE FROM acked_ids WHERE account = ? AND device_id = ? AND id IN"
        " (SELECT id FROM acked_ids WHERE account = ? AND device_id = ? LIMIT ?)",
        (account, device_id, account, device_id, PURGE_ACKED_IDS),
    ).rowcount:
        pass


def _purge_acked_ids(conn: Connection, now: int) -> None:
    """Forget the acked ids whose time is past: short-lived ones by their expiry index, the others
    (no index of their expiry: migration 22) a whole day at a time, one pass over the table for
    each day in ``acked_days`` that is over -- once a day, not at every purge."""
    conn.execute(f"DELETE FROM acked_ids WHERE {SHORT_LIVED_ACKED} AND expires <= ?", (now,))
    for (day,) in conn.execute("SELECT expires FROM acked_days WHERE expires <= ? ORDER BY expires", (now,)).fetchall():
        conn.execute("DELETE FROM acked_ids WHERE expires = ?", (day,))
        conn.execute("DELETE FROM acked_days WHERE expires = ?", (day,))
