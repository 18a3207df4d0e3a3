"""Who commits a member's leaving (docs/groups.md, "Rules"): a member leaves by proposing the
removal of its own leaf, and a staying member commits it.

The staying member with the lowest leaf index commits at once (client/groups/engine.py). If that
device is gone or offline, nobody else would: so every staying device notes when it processed
the first pending self-removal of a group (its sequence number and the device's time), and once
``LEAVE_AFTER_ITEMS`` more items were ordered, or ``LEAVE_AFTER_MS`` passed at a receive, while
it is still pending, it commits it too. The hub orders one commit per epoch; the others, made
again on top of it, find no pending proposals and are done (ops ``commit``: NothingToDo).

The notes are a small map in the kv (``groups/leaving``: [group id, [seq, ms]] pairs), written in the
transaction of the item that made them; a commit (which takes every pending proposal) or this
device's removal ends them.
"""

from __future__ import annotations

from sonet.core import canonical
from sonet.core.mls.group import Group
from sonet.core.mls.messages import Remove

from ..state import DeviceState

__all__ = ["LEAVE_AFTER_ITEMS", "LEAVE_AFTER_MS", "note", "forget", "overdue", "noted", "staying_leaves"]

_KEY = "groups/leaving"
#: later items of the group after which any staying member commits a pending self-removal
LEAVE_AFTER_ITEMS = 20
#: time after which it does so at a receive even if nothing else came
LEAVE_AFTER_MS = 10 * 60 * 1000


def _load(state: DeviceState) -> dict[bytes, list[int]]:
    raw = state.get(_KEY)
    return {group: first for group, first in canonical.loads(raw)} if raw is not None else {}


def _save(state: DeviceState, notes: dict[bytes, list[int]]) -> None:
    if notes:
        state.put(_KEY, canonical.dumps(sorted([group, first] for group, first in notes.items())))
    else:
        state.delete(_KEY)


def note(state: DeviceState, group: bytes, seq: int, now: int) -> None:
    """A self-removal of ``group`` was processed at item ``seq``: keep the first one."""
    notes = _load(state)
    if group not in notes:
        notes[group] = [seq, now]
        _save(state, notes)


def forget(state: DeviceState, group: bytes) -> None:
    notes = _load(state)
    if notes.pop(group, None) is not None:
        _save(state, notes)


def noted(state: DeviceState) -> list[bytes]:
    return sorted(_load(state))


def overdue(state: DeviceState, group: bytes, *, seq: int, now: int) -> bool:
    """Whether the noted self-removal of ``group`` waited long enough at item ``seq`` / time
    ``now`` for any staying member to commit it."""
    first = _load(state).get(group)
    return first is not None and (seq - first[0] >= LEAVE_AFTER_ITEMS or now - first[1] >= LEAVE_AFTER_MS)


def staying_leaves(group: Group) -> list[int]:
    """The members' leaf indices, lowest first, without those that proposed their removal."""
    leaving = {p.proposal.removed for p in group.pending_proposals() if isinstance(p.proposal, Remove)}
    return [index for index, _leaf in group.members() if index not in leaving]
