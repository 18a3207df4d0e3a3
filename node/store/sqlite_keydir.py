"""The key-directory half of the SQLite backend: the append-only log of account changes (one
leaf per change, appended by the account functions in their own transaction), this node's
signed heads and their cosignatures, the heads of other nodes it witnessed, and split views.

Plain functions of a connection, like the rest of the backend: ``SqliteStore`` (``sqlite.py``) runs
each on its worker thread, inside the transaction it opens where the function writes.
"""

from __future__ import annotations

from typing import Any

from sonet.core.keydir import encode_entry, leaf_hash

from .dialect import Connection
from .base import HeadRow, SplitRow, StoreError, WitnessRow

__all__: list[str] = []  # private to the SQLite backend; SqliteStore is the public face


# The log -----------------------------------------------------------------------------------


def _append_leaf(conn: Connection, account: str, now: int) -> None:
    """Append ``account``'s entry (its identity key and device list as the accounts table holds
    them now) as the next leaf, chained to the account's previous leaf. Runs inside the
    transaction of the change it records, so the change and its leaf commit together."""
    identity, device_list = conn.execute(
        "SELECT account_identity, device_list FROM accounts WHERE account = ?", (account,)
    ).fetchone()
    (prev,) = conn.execute(
        "SELECT coalesce(max(leaf_index), -1) FROM directory_leaves WHERE account = ?", (account,)
    ).fetchone()
    (index,) = conn.execute("SELECT coalesce(max(leaf_index) + 1, 0) FROM directory_leaves").fetchone()
    leaf = encode_entry(account=account, identity=bytes(identity), device_list=bytes(device_list), prev=prev, at=now)
    conn.execute(
        "INSERT INTO directory_leaves (leaf_index, account, leaf, leaf_hash) VALUES (?, ?, ?, ?)",
        (index, account, leaf, leaf_hash(leaf)),
    )


def _directory_hashes(conn: Connection, start: int) -> list[bytes]:
    rows = conn.execute(
        "SELECT leaf_hash FROM directory_leaves WHERE leaf_index >= ? ORDER BY leaf_index", (max(start, 0),)
    )
    return [bytes(h) for (h,) in rows]


def _directory_leaves(conn: Connection, start: int, end: int) -> list[bytes]:
    rows = conn.execute(
        "SELECT leaf FROM directory_leaves WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
        (max(start, 0), end),
    )
    return [bytes(leaf) for (leaf,) in rows]


def _directory_latest(conn: Connection, account: str) -> tuple[int, bytes] | None:
    row = conn.execute(
        "SELECT leaf_index, leaf FROM directory_leaves WHERE account = ? ORDER BY leaf_index DESC LIMIT 1",
        (account,),
    ).fetchone()
    return None if row is None else (row[0], bytes(row[1]))


def _directory_backfill(conn: Connection, now: int) -> int:
    missing = [
        name
        for (name,) in conn.execute(
            "SELECT account FROM accounts WHERE NOT EXISTS"
            " (SELECT 1 FROM directory_leaves l WHERE l.account = accounts.account) ORDER BY account"
        ).fetchall()
    ]
    for account in missing:
        _append_leaf(conn, account, now)
    return len(missing)


# This node's heads -------------------------------------------------------------------------


def _put_head(conn: Connection, size: int, root: bytes, head: bytes) -> None:
    row = conn.execute("SELECT root FROM directory_heads WHERE size = ?", (size,)).fetchone()
    if row is not None and bytes(row[0]) != root:
        raise StoreError(f"a head of size {size} with another root is already stored")
    # An upsert, not REPLACE: the cosignatures of (size, root) stay valid for the new head.
    conn.execute(
        "INSERT INTO directory_heads (size, root, head) VALUES (?, ?, ?)"
        " ON CONFLICT (size) DO UPDATE SET head = excluded.head",
        (size, root, head),
    )


def _head_row(conn: Connection, row: tuple[Any, ...] | None) -> HeadRow | None:
    if row is None:
        return None
    size, root, head = row
    cosignatures = conn.execute(
        "SELECT cosignature FROM directory_cosignatures WHERE size = ? ORDER BY witness", (size,)
    )
    return HeadRow(size=size, root=bytes(root), head=bytes(head), cosignatures=tuple(bytes(c) for (c,) in cosignatures))


def _latest_head(conn: Connection) -> HeadRow | None:
    row = conn.execute("SELECT size, root, head FROM directory_heads ORDER BY size DESC LIMIT 1").fetchone()
    return _head_row(conn, row)


def _cosigned_head(conn: Connection, min_size: int) -> HeadRow | None:
    row = conn.execute(
        "SELECT size, root, head FROM directory_heads h WHERE size >= ?"
        " AND EXISTS (SELECT 1 FROM directory_cosignatures c WHERE c.size = h.size)"
        " ORDER BY size DESC LIMIT 1",
        (min_size,),
    ).fetchone()
    return _head_row(conn, row)


def _add_cosignature(conn: Connection, size: int, witness: str, cosignature: bytes) -> None:
    if conn.execute("SELECT 1 FROM directory_heads WHERE size = ?", (size,)).fetchone() is None:
        raise StoreError(f"no head of size {size} to keep a cosignature of")
    conn.execute(
        "INSERT INTO directory_cosignatures (size, witness, cosignature) VALUES (?, ?, ?)"
        " ON CONFLICT (size, witness) DO UPDATE SET cosignature = excluded.cosignature",
        (size, witness, cosignature),
    )


# Witnessing other nodes --------------------------------------------------------------------

_WITNESS_COLUMNS = "node, size, root, head, at"


def _witness_row(row: tuple[Any, ...]) -> WitnessRow:
    node, size, root, head, at = row
    return WitnessRow(node=node, size=size, root=bytes(root), head=bytes(head), at=at)


def _witnessed(conn: Connection, node: str) -> WitnessRow | None:
    row = conn.execute(f"SELECT {_WITNESS_COLUMNS} FROM witnessed WHERE node = ?", (node,)).fetchone()
    return None if row is None else _witness_row(row)


def _witnessed_all(conn: Connection) -> list[WitnessRow]:
    return [_witness_row(row) for row in conn.execute(f"SELECT {_WITNESS_COLUMNS} FROM witnessed ORDER BY node")]


def _set_witnessed(conn: Connection, row: WitnessRow) -> None:
    conn.execute(
        f"INSERT INTO witnessed ({_WITNESS_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (node) DO UPDATE SET size = excluded.size, root = excluded.root, head = excluded.head, at = excluded.at",
        (row.node, row.size, row.root, row.head, row.at),
    )


_SPLIT_COLUMNS = "node, kind, first, second, source, detected_at"


def _record_split(conn: Connection, row: SplitRow) -> bool:
    inserted = conn.execute(
        f"INSERT INTO splits ({_SPLIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (node) DO NOTHING",
        (row.node, row.kind, row.first, row.second, row.source, row.detected_at),
    ).rowcount
    return inserted == 1


def _splits(conn: Connection) -> list[SplitRow]:
    rows = conn.execute(f"SELECT {_SPLIT_COLUMNS} FROM splits ORDER BY detected_at, rowid")
    return [
        SplitRow(node=n, kind=k, first=bytes(f), second=bytes(s), source=src, detected_at=at)
        for n, k, f, s, src, at in rows
    ]
