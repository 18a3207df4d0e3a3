"""The SQLite side of ``queue_tails`` (SQLite only: PostgreSQL has several writers): what each
group commit added to and deleted from the outbox and the mailboxes, captured on the writer
thread just before its COMMIT, and handed to
the in-memory tails on the trio thread after it (``GroupCommit``: before the group's callers
return, so before anyone they wake reads).

Rows added: both tables' seqs are AUTOINCREMENT, and this connection is the file's only
writer between two of its commits (``PRAGMA data_version`` tells when another connection
wrote: then nothing is known, ``reset``), so a commit's new rows are those past the highest
seq the last commit saw. Rows deleted, however (a settle, an ack, a purge, a device's removal
by its foreign key): TEMP triggers on this connection list them in ``temp.tail_gone``, which
the capture empties.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from sonet.core import limits
from sonet.federation.records import QueuedItem

from .base import MailboxItem
from .queue_tails import QueueTails

__all__ = ["SqliteTails", "Captured"]

Mailbox = tuple[str, int]

#: more deletions than this in one commit (a purge): everything is forgotten rather than
#: looked at one by one
_MANY_GONE = 10_000

_SETUP = (
    "CREATE TEMP TABLE IF NOT EXISTS tail_gone (queue INTEGER NOT NULL, seq INTEGER NOT NULL, a TEXT, d INTEGER)",
    """CREATE TEMP TRIGGER IF NOT EXISTS tail_outbox_gone AFTER DELETE ON main.outbox BEGIN
        INSERT INTO tail_gone VALUES (0, OLD.seq, OLD.dest, NULL);
    END""",
    """CREATE TEMP TRIGGER IF NOT EXISTS tail_mailbox_gone AFTER DELETE ON main.mailbox BEGIN
        INSERT INTO tail_gone VALUES (1, OLD.seq, OLD.account, OLD.device_id);
    END""",
)


def _highest(conn: sqlite3.Connection, table: str) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return int(row[0]) if row else 0


@dataclass(slots=True)
class Captured:
    """One commit's changes to the two kinds of queue (``reset``: unknown, forget everything)."""

    reset: bool
    outbox_high: int
    mailbox_high: int
    version: int
    outbox_touched: set[str] = field(default_factory=set)
    outbox_added: dict[str, list[QueuedItem]] = field(default_factory=dict)
    outbox_gone: list[tuple[str, int]] = field(default_factory=list)
    mailbox_touched: set[Mailbox] = field(default_factory=set)
    mailbox_added: dict[Mailbox, list[MailboxItem]] = field(default_factory=dict)
    mailbox_gone: list[tuple[Mailbox, int]] = field(default_factory=list)


class SqliteTails:
    """The tails of a SQLite store's outboxes (by destination) and mailboxes (by device)."""

    def __init__(self) -> None:
        self.outbox: QueueTails[str, QueuedItem] = QueueTails(
            size=lambda item: len(item.data),
            max_items=2 * limits.MAX_TRANSIT_PER_PUSH,
            max_bytes=2 * limits.MAX_PUSH_BYTES,
            total_bytes=64 * 1024 * 1024,
            max_entries=1024,
        )
        self.mailbox: QueueTails[Mailbox, MailboxItem] = QueueTails(
            size=lambda item: len(item.body),
            max_items=512,
            max_bytes=2 * 1024 * 1024,
            total_bytes=64 * 1024 * 1024,
            max_entries=16_384,
        )
        # As of the last commit published (read and written by the writer thread only while no
        # group runs: a capture, then its publish, then the next group's capture).
        self._outbox_high = 0
        self._mailbox_high = 0
        self._version = -1
        self._known = False  # False after a failed group: the next capture knows nothing
        self._admin_version: int | None = None

    # Writer thread ---------------------------------------------------------------------------

    def setup(self, conn: sqlite3.Connection) -> None:
        """On the writer connection, after its migrations and before its first write."""
        for sql in _SETUP:
            conn.execute(sql)
        self._outbox_high = _highest(conn, "outbox")
        self._mailbox_high = _highest(conn, "mailbox")
        self._version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        self._known = True

    def capture(self, conn: sqlite3.Connection) -> Captured:
        """Inside the group's transaction, after its writes, before its COMMIT."""
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        gone = conn.execute("SELECT count(*) FROM tail_gone").fetchone()[0]
        if not self._known or version != self._version or gone > _MANY_GONE:
            if gone:
                conn.execute("DELETE FROM tail_gone")
            return Captured(True, _highest(conn, "outbox"), _highest(conn, "mailbox"), version)
        out = Captured(False, self._outbox_high, self._mailbox_high, version)
        if gone:
            for queue, seq, a, d in conn.execute("SELECT queue, seq, a, d FROM tail_gone"):
                if queue == 0:
                    out.outbox_gone.append((a, seq))
                else:
                    out.mailbox_gone.append(((a, d), seq))
            conn.execute("DELETE FROM tail_gone")
        self._capture_outbox(conn, out)
        self._capture_mailbox(conn, out)
        return out

    def _capture_outbox(self, conn: sqlite3.Connection, out: Captured) -> None:
        rows = conn.execute(
            "SELECT seq, dest, key, expires, data, queued_at FROM outbox WHERE seq > ? ORDER BY seq", (out.outbox_high,)
        )
        for seq, dest, key, expires, data, queued_at in rows:
            out.outbox_high = seq
            out.outbox_touched.add(dest)
            if self.outbox.wants(dest):
                item = QueuedItem(seq=seq, dest=dest, key=bytes(key), expires=expires, data=bytes(data), queued_at=queued_at)
                out.outbox_added.setdefault(dest, []).append(item)

    def _capture_mailbox(self, conn: sqlite3.Connection, out: Captured) -> None:
        rows = conn.execute(
            "SELECT seq, account, device_id, id, expires, kind, body, body_ref, stored_at FROM mailbox WHERE seq > ? ORDER BY seq",
            (out.mailbox_high,),
        )
        bodies: dict[int, bytes] = {}  # a group item's body, shared by its rows
        for seq, account, device_id, id_, expires, kind, body, body_ref, stored_at in rows:
            out.mailbox_high = seq
            key = (account, device_id)
            out.mailbox_touched.add(key)
            if not self.mailbox.wants(key):
                continue
            if body_ref is not None:
                if body_ref not in bodies:
                    bodies[body_ref] = _group_body(conn, body_ref)
                body = bodies[body_ref]
            item = MailboxItem(seq=seq, id=bytes(id_), expires=expires, kind=kind, body=bytes(body), stored_at=stored_at)
            out.mailbox_added.setdefault(key, []).append(item)

    # Trio thread -------------------------------------------------------------------------------

    def publish(self, captured: Captured) -> None:
        """The group that captured ``captured`` committed (called before its callers return)."""
        self._outbox_high, self._mailbox_high, self._version = captured.outbox_high, captured.mailbox_high, captured.version
        self._known = True
        if captured.reset:
            self.forget()
            return
        self.outbox.publish(captured.outbox_touched, captured.outbox_added, captured.outbox_gone)
        self.mailbox.publish(captured.mailbox_touched, captured.mailbox_added, captured.mailbox_gone)

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
        self.outbox.reset()
        self.mailbox.reset()


def _group_body(conn: sqlite3.Connection, body_ref: int) -> Any:
    row = conn.execute("SELECT body FROM group_bodies WHERE id = ?", (body_ref,)).fetchone()
    return row[0] if row else b""
