"""The ratchet trees a hub keeps for joiners (core/groups/trees.py; table ``group_trees``,
migration ``_GROUP_TREES``).

When a hub orders a commit that adds devices, it keeps the public ratchet tree of the epoch
that commit starts (``_keep_tree``, in the ordering transaction), because the Welcome goes
without it. Bounded per group (``MAX_KEPT_TREES`` trees, ``MAX_KEPT_TREE_BYTES`` bytes, the
oldest dropped first) and kept for the item TTL: the Welcome it serves lives no longer. The bytes
are counted against the node's disk reserve like any stored row (``Charges.stored``).
"""

from __future__ import annotations

import logging
from sonet.core.groups.trees import MAX_KEPT_TREE_BYTES, MAX_KEPT_TREES, MAX_TREE_BYTES

from .dialect import Connection
from .sqlite_budgets import Charges

__all__: list[str] = []  # private to the SQLite backend; SqliteStore is the public face

log = logging.getLogger("sonet.node.groups")


def _keep_tree(conn: Connection, group: bytes, epoch: int, tree: bytes, *, now: int, ttl_ms: int, charges: Charges) -> None:
    """Keep ``tree`` as the group's tree at ``epoch`` (a retried commit: kept once), then drop
    the group's oldest trees beyond the bounds."""
    if len(tree) > MAX_TREE_BYTES:
        log.warning("group %s: the tree of epoch %d (%d bytes) is too large to keep for joiners", group.hex(), epoch, len(tree))
        return
    cursor = conn.execute(
        "INSERT INTO group_trees (grp, epoch, tree, size, expires) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (group, epoch, tree, len(tree), now + ttl_ms),
    )
    if cursor.rowcount:
        charges.stored(len(tree))
    kept, size = 0, 0
    for epoch_kept, tree_size in conn.execute("SELECT epoch, size FROM group_trees WHERE grp = ? ORDER BY epoch DESC", (group,)).fetchall():
        kept, size = kept + 1, size + tree_size
        if kept > MAX_KEPT_TREES or size > MAX_KEPT_TREE_BYTES:
            conn.execute("DELETE FROM group_trees WHERE grp = ? AND epoch <= ?", (group, epoch_kept))
            break


def _group_tree(conn: Connection, group: bytes, epoch: int, offset: int, length: int, now: int) -> tuple[int, bytes] | None:
    """(total, the ``length`` bytes from ``offset`` on) of the kept tree, None if none is kept
    (or ``offset`` lies outside it)."""
    row = conn.execute(
        "SELECT size, substr(tree, ? + 1, ?) FROM group_trees WHERE grp = ? AND epoch = ? AND expires > ?",
        (offset, length, group, epoch, now),
    ).fetchone()
    if row is None or not 0 <= offset < row[0]:
        return None
    return row[0], bytes(row[1])


def _purge_group_trees(conn: Connection, now: int) -> None:
    conn.execute("DELETE FROM group_trees WHERE expires <= ?", (now,))
