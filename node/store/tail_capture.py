"""The SQLite side of ``queue_tails`` (SQLite only: PostgreSQL has several writers): what each
group commit added to and deleted from the mailboxes, captured on the writer thread just before
its COMMIT, and handed to the in-memory tails on the trio thread after it (``GroupCommit``: before
the group's callers return, so before anyone they wake reads). The outboxes need no tails: the
SQLite store knows them from memory (outbox_log.py).

Rows added: the mailbox's seq is AUTOINCREMENT, and this connection is the file's only
writer between two of its commits (``PRAGMA data_version`` tells when another connection
wrote: then nothing is known, ``reset``), so a commit's new rows are those past the highest
seq the last commit saw. Rows deleted, however (a settle, an ack, a purge, a device's removal
by its foreign key): TEMP triggers on this connection list them in ``temp.tail_gone``, which
the capture empties.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from .base import MailboxItem
from .queue_tails import Changes, QueueTails
from .sqlite_mailbox import PENDING_COLUMNS, mailbox_item

__all__ = ["SqliteTails", "Captured"]

Mailbox = tuple[str, int]

#: more deletions than this in one commit (a purge): everything is forgotten rather than
#: looked at one by one
_MANY_GONE = 10_000

#: what an item holds in memory besides its bytes (its Python objects; a mailbox item with a
#: 1-byte body holds ~260 B, tracemalloc)
_MAILBOX_ITEM_OVERHEAD = 320

_SETUP = (
    "CREATE TEMP TABLE IF NOT EXISTS tail_gone (seq INTEGER NOT NULL, a TEXT, d INTEGER)",
    """CREATE TEMP TRIGGER IF NOT EXISTS tail_mailbox_gone AFTER DELETE ON main.mailbox BEGIN
        INSERT INTO tail_gone VALUES (OLD.seq, OLD.account, OLD.device_id);
    END""",
)


def _highest(conn: sqlite3.Connection, table: str) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True)
class _Table:
    """A queue table: its key columns, and its items' columns as its readers read them (each
    row's ``size`` column holds its item's bytes: a group row's too, whose body is elsewhere)."""

    name: str
    key_columns: str
    key_where: str
    columns: str
    item: Callable[[tuple[Any, ...]], Any]


_MAILBOX = _Table("mailbox", "account, device_id", "account = ? AND device_id = ?", PENDING_COLUMNS, mailbox_item)


@dataclass(slots=True)
class Captured:
    """One commit's changes to the mailboxes (``reset``: unknown, forget everything)."""

    reset: bool
    mailbox_high: int
    version: int
    mailbox: Changes[Mailbox, MailboxItem] = field(default_factory=Changes)
    #: False: the capture failed, the highs are not known (the next one forgets all again)
    known: bool = True


class SqliteTails:
    """The tails of a SQLite store's mailboxes (by device)."""

    def __init__(self) -> None:
        self.mailbox: QueueTails[Mailbox, MailboxItem] = QueueTails(
            size=lambda item: len(item.body),
            max_items=512,
            max_bytes=2 * 1024 * 1024,
            total_bytes=64 * 1024 * 1024,
            max_entries=16_384,
            overhead=_MAILBOX_ITEM_OVERHEAD,
        )
        # As of the last commit published (read and written by the writer thread only while no
        # group runs: a capture, then its publish, then the next group's capture).
        self._mailbox_high = 0
        self._version = -1
        self._known = False  # False after a failed group: the next capture knows nothing
        self._admin_version: int | None = None

    # Writer thread ---------------------------------------------------------------------------

    def setup(self, conn: sqlite3.Connection) -> None:
        """On the writer connection, after its migrations and before its first write."""
        for sql in _SETUP:
            conn.execute(sql)
        self._mailbox_high = _highest(conn, "mailbox")
        self._version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        self._known = True

    def begin(self, conn: sqlite3.Connection) -> None:
        """(A group's transaction began: nothing to do, the capture reads what it needs.)"""

    def mark(self) -> None:
        """(Nothing journaled: a savepoint's rollback undoes ``tail_gone``'s rows too.)"""

    def rollback_to(self, mark: None) -> None:
        pass

    def capture(self, conn: sqlite3.Connection) -> Captured:
        """Inside the group's transaction, after its writes, before its COMMIT. Never fails
        the group: what cannot be captured is forgotten (the readers read the database)."""
        try:
            return self._capture(conn)
        except Exception:  # noqa: BLE001 - e.g. a row that does not read back: forget all
            return Captured(True, self._mailbox_high, self._version, known=False)

    def _capture(self, conn: sqlite3.Connection) -> Captured:
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        gone = conn.execute("SELECT count(*) FROM tail_gone").fetchone()[0]
        if not self._known or version != self._version or gone > _MANY_GONE:
            if gone:
                conn.execute("DELETE FROM tail_gone")
            return Captured(True, _highest(conn, "mailbox"), version)
        out = Captured(False, self._mailbox_high, version)
        if gone:
            self._capture_gone(conn, out)
        out.mailbox_high = self._capture_added(conn, self.mailbox, out.mailbox, out.mailbox_high, _MAILBOX)
        return out

    def _capture_gone(self, conn: sqlite3.Connection, out: Captured) -> None:
        # Which queues lost rows (their reads under way are spoiled), and for those with an
        # entry, which of its rows: only those past where its reader is matter (acked and
        # settled rows are behind it, mostly left out by SQLite). One pass over the deleted
        # rows, not one per queue with an entry: a purge of 10,000 rows of 2,000 such mailboxes
        # took 0.94 s of CPU here, in the write transaction (0.015 s in one pass).
        afters: dict[Mailbox, int] = {}
        for a, d in conn.execute("SELECT DISTINCT a, d FROM tail_gone").fetchall():
            key = (a, d)
            out.mailbox.gone_keys.add(key)
            entry = self.mailbox.entry(key)
            if entry is not None:
                afters[key] = entry.after
                out.mailbox.gone[key] = (entry, [])
        if afters:
            for a, d, seq in conn.execute("SELECT a, d, seq FROM tail_gone WHERE seq > ?", (min(afters.values()),)):
                after = afters.get((a, d))
                if after is not None and seq > after:
                    out.mailbox.gone[(a, d)][1].append(seq)
        conn.execute("DELETE FROM tail_gone")

    @staticmethod
    def _capture_added(conn: sqlite3.Connection, tails: QueueTails[Any, Any], changes: Changes[Any, Any], high: int, table: _Table) -> int:
        # The new rows' queues (counted by SQLite: no row copied for queues nobody waits on),
        # then the items of those with an entry, as the reader's own query reads them: only
        # what the caps let the tails hold (a group item's body, stored once, would else be
        # copied here once per mailbox; the entries past the caps go anyway).
        before = high
        captured = 0
        for *parts, count, size, last in conn.execute(
            f"SELECT {table.key_columns}, count(*), sum(size), max(seq) FROM {table.name} WHERE seq > ? GROUP BY {table.key_columns}",
            (before,),
        ).fetchall():
            key = parts[0] if len(parts) == 1 else tuple(parts)
            high = max(high, last)
            changes.touched.add(key)
            entry = tails.entry(key)
            cost = None if entry is None else tails.takes(entry, count, size, captured)
            if entry is not None and cost is not None:
                captured += cost
                rows = conn.execute(
                    f"SELECT {table.columns} FROM {table.name} WHERE {table.key_where} AND seq > ? ORDER BY seq",
                    (*parts, before),
                ).fetchall()
                changes.added[key] = (entry, [table.item(row) for row in rows])
        return high

    # Trio thread -------------------------------------------------------------------------------

    def publish(self, captured: Captured) -> None:
        """The group that captured ``captured`` committed (called before its callers return)."""
        self._mailbox_high, self._version = captured.mailbox_high, captured.version
        self._known = captured.known
        if captured.reset:
            self.forget()
            return
        self.mailbox.publish(captured.mailbox)

    def failed(self) -> None:
        """A group failed (nothing of it, or not knowably all of it, committed)."""
        self._known = False
        self.forget()

    def admin_version(self, version: int) -> None:
        """The store's ``admin_version`` as just read: when it moved, another process (an admin
        command) wrote; its changes are not waited for until this node's next commit."""
        if version != self._admin_version:
            self._admin_version = version
            self.forget()

    def forget(self) -> None:
        self.mailbox.reset()


