"""The SQLite backend of ``sonet-node backup`` / ``restore``: ``node.db`` copied with SQLite's
online backup API from a connection of its own, while the node keeps writing.

The copy is taken in one step, inside one read transaction: in WAL mode that reads the last
committed state without holding the node's writer back, and the copy is that state exactly
(stepping page by page would restart whenever the node commits). The copy is then made a
single file (rollback journal, no ``-wal``), checked with ``quick_check``, and its schema
version (``PRAGMA user_version``, node/store/migrations.py) goes into the manifest.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from .data_dir import DB_FILE
from .store.sqlite import BUSY_TIMEOUT_S

__all__ = ["SqliteBackup"]


class SqliteBackupError(Exception):
    """The database could not be copied or checked (one line)."""


def _uri(path: Path, mode: str) -> str:
    return f"file:{quote(str(path.resolve()))}?mode={mode}"


class SqliteBackup:
    kind: str = "sqlite"
    #: the files of the database in a backup (relative paths)
    files: tuple[str, ...] = (DB_FILE,)

    def dump(self, data: Path, dest: Path) -> int:
        """Copy ``data``'s database into ``dest``; return its schema version."""
        target = dest / DB_FILE
        # created here so that it is 0600 from the start, like the node's own (it holds the same)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            # mode=rw: never create a database that is missing (the caller checked it exists)
            src = sqlite3.connect(_uri(data / DB_FILE, "rw"), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                src.execute("PRAGMA query_only = ON")
                out = sqlite3.connect(target, isolation_level=None)
                try:
                    src.backup(out)  # all pages in one step: one consistent snapshot
                    out.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
                finally:
                    out.close()
            finally:
                src.close()
        except sqlite3.Error as exc:
            raise SqliteBackupError(f"cannot copy {data / DB_FILE}: {exc}") from None
        return self.check(target)

    def check(self, db: Path) -> int:
        """The schema version of the database file ``db``, after SQLite's quick check of it
        (read-only: the file is not changed)."""
        try:
            conn = sqlite3.connect(_uri(db, "ro") + "&immutable=1", uri=True, isolation_level=None)
            try:
                verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise SqliteBackupError(f"{db} is not a usable SQLite database: {exc}") from None
        if verdict != "ok":
            raise SqliteBackupError(f"{db} failed SQLite's check: {str(verdict)[:200]}")
        return version
