"""What must be in a node's data directory before anything opens it.

SQLite creates a database that is missing, and migrates an empty file into an empty schema: left
alone, a lost or zeroed ``node.db`` next to the node's key would come back as a node with no
accounts. So an initialised directory (one with ``node.key``) is checked first, cheaply (the
file's size and SQLite header, not its pages), and refused with the fix in one line.
"""

from __future__ import annotations

import re
from pathlib import Path

from .identity import KEY_FILE

__all__ = ["DataDirError", "CONFIG_FILE", "DB_FILE", "RUNTIME_FILE", "NODE_FILES", "LOCK_FILE", "require_directory", "check_database", "contents", "instance_files"]

#: the configuration (node/config.py reads it; named here so that checking a directory does not
#: load the settings, ~0.4 s of imports), the SQLite database, and what a running node writes
#: about itself (its pid, URL, links)
CONFIG_FILE = "node.toml"
DB_FILE = "node.db"
RUNTIME_FILE = "run.json"
#: the files `sonet-node init` creates; any of them marks a directory as a node's
NODE_FILES = (CONFIG_FILE, KEY_FILE, DB_FILE)
#: held by every `sonet-node run` on the directory: exclusively on SQLite (one process), shared
#: on PostgreSQL (several); `sonet-node restore` takes it exclusively
LOCK_FILE = "node.lock"

_SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_BYTES = 100
_RESTORE = "restore node.db from a backup, or start a new node with `sonet-node init --data NEW_DIR`"


class DataDirError(Exception):
    """The data directory is missing or damaged; the message is one line naming the fix."""


def require_directory(data: Path) -> None:
    """``data`` is a node's directory: a missing config or key alone is a damaged node (the
    loaders name it), neither is no node at all -- one code for that whatever the command."""
    if not data.exists():
        raise DataDirError(f"{data} does not exist: run `sonet-node init --data {data} ...` first")
    if not data.is_dir():
        raise DataDirError(f"{data} is not a directory (--data takes a node's data directory)")
    if not (data / KEY_FILE).exists() and not (data / CONFIG_FILE).exists():
        raise DataDirError(f"{data} holds no node (no {CONFIG_FILE}, no {KEY_FILE}): run `sonet-node init --data {data} ...` first, or check --data")


def check_database(data: Path) -> None:
    """Refuse a missing, empty, foreign or truncated ``node.db`` (without changing it)."""
    path = data / DB_FILE
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = f.read(_HEADER_BYTES)
    except FileNotFoundError:
        raise DataDirError(f"{path} is missing but {data / KEY_FILE} exists (every account lived in it): {_RESTORE}") from None
    except OSError as exc:
        raise DataDirError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise DataDirError(f"{path} is empty (every account lived in it): {_RESTORE}")
    if len(header) < _HEADER_BYTES or not header.startswith(_SQLITE_MAGIC):
        raise DataDirError(f"{path} is not a SQLite database (corrupt or overwritten): {_RESTORE}")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid only while it matches the change counter; and while a WAL holds
    # commits that a checkpoint is moving into the file, the file may be short for a moment.
    counted = header[24:28] == header[92:96]
    wal = data / (DB_FILE + "-wal")
    if counted and not (wal.exists() and wal.stat().st_size > 0) and size < pages * page_size:
        raise DataDirError(f"{path} is truncated ({size} of {pages * page_size} bytes): {_RESTORE}")


def contents(data: Path) -> list[str]:
    """The names in ``data`` (sorted; empty when it does not exist)."""
    try:
        return sorted(p.name for p in data.iterdir())
    except FileNotFoundError:
        return []


def instance_files(listen: str, *, shared: bool) -> tuple[str | None, str]:
    """(the lock file of this process alone, its runtime file) for a ``sonet-node run`` on
    ``listen``. One process per directory (``shared`` False: SQLite): none, ``run.json``.
    Several (PostgreSQL): one of each per listen address, so processes on other addresses
    never clash and a second one on the same address is refused."""
    if not shared:
        return None, RUNTIME_FILE
    tag = re.sub(r"[^A-Za-z0-9.-]", "_", listen)
    return f"node-{tag}.lock", f"run-{tag}.json"
