"""What happened to a group's membership, for ``sonet recv`` (docs/groups.md, "Group events").

The engine (client/groups/engine.py) derives events from the ordered items it processes: from
another member's commit (its committer and the proposals it applies: who was added, removed or
left, who became an admin, where the hub moved), from the Welcome that added this device, and
from an admin's ``group_state`` message that changed the name or topic. Events are about
accounts, not devices: a member's own devices following its device list make none, except when
this device itself is removed. The device's own changes make none on this device (the command
that made them said so); its other devices see them as another member's.

Each event is stored in the ordering transaction of its item (``group_events``, sealed like
``group_inbox``: it names accounts) and shown by the next ``recv`` once, like a message.
``DeviceState`` (client/state.py) mixes ``GroupEventState`` in.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sonet.core import canonical
from sonet.core.errors import ProtocolError

if TYPE_CHECKING:
    # MLS is imported by the functions that read commits: DeviceState (client/state.py) holds
    # these events, and a command that never touches a group must not load MLS (~0.2 s)
    from sonet.core.groups.state import GroupExtension
    from sonet.core.mls.group import PublicCommit
    from sonet.core.mls.key_package import LeafNode

from ..vault import Vault

__all__ = ["GROUP_EVENTS_SCHEMA", "GroupEvent", "GroupEventState", "commit_events", "ADDED", "REMOVED", "LEFT", "ADMIN", "HUB", "RENAMED", "TOPIC"]

GROUP_EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS group_events (
    group_id BLOB NOT NULL, seq INTEGER NOT NULL, n INTEGER NOT NULL, received_at INTEGER NOT NULL, body BLOB NOT NULL,
    shown INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (group_id, seq, n));
"""

#: ``member`` was added / removed by ``by``, left; ``by`` made ``member`` an admin, moved the
#: hub to ``hub``, renamed the group (``name``, ``before``: the old name) or set its ``topic``
ADDED, REMOVED, LEFT, ADMIN, HUB, RENAMED, TOPIC = "added", "removed", "left", "admin", "hub", "renamed", "topic"


@dataclass(frozen=True, kw_only=True)
class GroupEvent:
    group: bytes
    #: the sequence number of the item it came with
    seq: int
    event: str
    #: the account that did it (None: not known)
    by: str | None = None
    #: the account it was done to (added, removed, left, admin)
    member: str | None = None
    hub: str | None = None
    name: str | None = None
    before: str | None = None
    topic: str | None = None
    received_at: int = 0
    #: the group's name on this device when the event was read
    group_name: str = ""

    def _body(self) -> dict:
        return {"event": self.event, "by": self.by, "member": self.member, "hub": self.hub, "name": self.name, "before": self.before, "topic": self.topic}


def _account(leaves: dict[int, LeafNode], index: int) -> str | None:
    from sonet.core.groups.credential import leaf_member

    leaf = leaves.get(index)
    if leaf is None:
        return None
    try:
        return leaf_member(leaf).account
    except ProtocolError:
        return None


def commit_events(
    *, group: bytes, seq: int, before: Iterable[tuple[int, LeafNode]], commit: PublicCommit, ext_before: GroupExtension,
    ext_after: GroupExtension, me: str, my_leaf: int, received_at: int,
) -> list[GroupEvent]:
    """The events of another member's ``commit`` (checked, not merged yet), ``before`` being
    the members it was made on. ``me``: this device's account, ``my_leaf`` its leaf (its
    removal is an event even when the rest of its account stays)."""
    from sonet.core.groups.credential import leaf_member
    from sonet.core.mls.messages.proposal import Remove

    leaves = dict(before)
    accounts_before = {a for i in leaves for a in (_account(leaves, i),) if a is not None}
    committer = _account(leaves, commit.sender)
    removed = {i for i, _leaf in commit.removed}
    removes_me = my_leaf in removed
    accounts_after = {a for i in leaves if i not in removed for a in (_account(leaves, i),) if a is not None}
    accounts_after |= {leaf_member(leaf).account for _i, leaf in commit.added}
    # who proposed each removal: the leaving member's own leaf, or an admin's (the committer's
    # for proposals by value)
    proposer_of = {proposal.removed: proposer for proposal, proposer in commit.proposals if isinstance(proposal, Remove)}

    def event(kind: str, **fields: Any) -> GroupEvent:
        return GroupEvent(group=group, seq=seq, event=kind, received_at=received_at, **fields)

    events: list[GroupEvent] = []
    for account in sorted({leaf_member(leaf).account for _i, leaf in commit.added} - accounts_before):
        events.append(event(ADDED, by=committer, member=account))
    gone = sorted(accounts_before - accounts_after)
    if removes_me and me not in gone:
        gone.append(me)  # this device is removed while its account stays (its device list dropped it)
    for account in gone:
        leaves_gone = [i for i in sorted(removed) if _account(leaves, i) == account]
        if account == me and removes_me:  # this device's own leaf decides: it left, or someone removed it
            leaves_gone = [my_leaf]
        if any(proposer_of.get(i) == i for i in leaves_gone):
            events.append(event(LEFT, by=account, member=account))
        else:
            by = next((_account(leaves, proposer_of[i]) for i in leaves_gone if i in proposer_of), None)
            events.append(event(REMOVED, by=by or committer, member=account))
    for account in sorted(set(ext_after.admins) - set(ext_before.admins)):
        events.append(event(ADMIN, by=committer, member=account))
    if ext_after.hub != ext_before.hub:
        events.append(event(HUB, by=committer, hub=ext_after.hub))
    return events


class GroupEventState:
    _db: sqlite3.Connection
    vault: Vault

    # provided by DeviceState (client/state.py), the only class built on this one
    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def store_group_events(self, events: list[GroupEvent]) -> None:
        """Keep ``events`` (of one item) to show; the same item's again changes nothing."""
        with self.transaction():
            for n, e in enumerate(events):
                self._db.execute(
                    "INSERT OR IGNORE INTO group_events (group_id, seq, n, received_at, body) VALUES (?, ?, ?, ?, ?)",
                    (e.group, e.seq, n, e.received_at, self.vault.seal(canonical.dumps(e._body()), _where(e.group, e.seq, n))),
                )

    def unshown_group_events(self) -> list[GroupEvent]:
        """The events not shown yet, in the order they happened (a group's in its order), each
        with its group's current name."""
        rows = self._db.execute(
            "SELECT e.group_id, e.seq, e.n, e.received_at, e.body, g.id FROM group_events e LEFT JOIN mls_groups g ON g.id = e.group_id"
            " WHERE e.shown = 0 ORDER BY e.rowid"
        ).fetchall()
        names: dict[bytes, str] = {}
        events = []
        for group, seq, n, received_at, body, known in rows:
            if group not in names:
                record = self.group_record(group) if known is not None else None  # type: ignore[attr-defined]
                names[group] = record.name if record is not None else ""
            fields = canonical.loads(self.vault.open_value(body, _where(group, seq, n)))
            events.append(GroupEvent(group=group, seq=seq, received_at=received_at, group_name=names[group], **fields))
        return events

    def group_events_shown(self, group: bytes) -> bool:
        """Whether an event of ``group`` was shown (e.g. "you were added to ID", the group's
        name not known yet)."""
        return self._db.execute("SELECT 1 FROM group_events WHERE group_id = ? AND shown = 1 LIMIT 1", (group,)).fetchone() is not None

    def mark_group_events_shown(self, keys: list[tuple[bytes, int]]) -> None:
        """Mark the events of these (group, seq) items shown."""
        with self.transaction():
            self._db.executemany("UPDATE group_events SET shown = 1 WHERE group_id = ? AND seq = ?", keys)


def _where(group: bytes, seq: int, n: int) -> bytes:
    return b"group/event/" + group + b"/" + str(seq).encode() + b"/" + str(n).encode()
