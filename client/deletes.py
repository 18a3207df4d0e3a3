"""What a delete for everyone erases on a device, whichever comes first: the delete, the message
it names, or an edit of that message (client/state_gestures.py erases; client/history_fold.py
``may_change`` says who may delete what, and when).

Called in the transaction that stores the item, so a delete never sits on the device next to a
text it has already erased elsewhere: the 1:1 receive path (client/receiving.py), the group
engine (client/groups/engine.py) and the sending side (client/gestures.py).
"""

from __future__ import annotations

from sonet.core.content import DELETE, EDIT, FILE, REPLY, TEXT

from .groups.store import GroupMessage
from .history_fold import may_change
from .rich_fields import RICH_MESSAGES
from .state import DeviceState, InboxMessage

__all__ = ["after_inbox_message", "after_group_message", "erase_deleted"]


def after_inbox_message(state: DeviceState, me: str, message: InboxMessage) -> None:
    """A 1:1 item was stored (``message.peer`` is its conversation)."""
    _after(state, me, message.type, message.id, message.fields, peer=message.peer, group=None)


def after_group_message(state: DeviceState, me: str, message: GroupMessage) -> None:
    _after(state, me, message.type, message.id, message.fields, peer=None, group=message.group)


def _after(state: DeviceState, me: str, kind: str, msg_id: bytes, fields: dict, *, peer: str | None, group: bytes | None) -> None:
    if kind == DELETE:
        erase_deleted(state, me, peer=peer, group=group, delete_id=msg_id)
    elif kind in (TEXT, REPLY, EDIT, FILE, *RICH_MESSAGES) and state.has_deletes(peer=peer, group=group):
        named = msg_id if kind != EDIT else _named(fields)
        if named is not None:
            erase_deleted(state, me, peer=peer, group=group, message_id=named)


def erase_deleted(
    state: DeviceState, me: str, *, peer: str | None, group: bytes | None, delete_id: bytes | None = None, message_id: bytes | None = None
) -> int:
    """Erase the messages of the conversation that its deletes (the one ``delete_id``, or those
    naming ``message_id``) may delete; how many were erased."""
    gestures = state.conversation_gestures(peer=peer, group=group)
    erased = 0
    for d in gestures:
        if d.type != DELETE or (delete_id is not None and d.id != delete_id):
            continue
        named = _named(d.fields)
        if named is None or (message_id is not None and named != message_id):
            continue
        kept = state.find_message(named, me, peer=peer, group=group)
        if kept is None:
            continue  # not held here (kept: applies when it comes)
        if not may_change(DELETE, by=me if d.own else d.sender, at=d.at, author=kept.author, written_at=kept.at):
            continue
        state.erase_message(kept, [g for g in gestures if g.type == EDIT and _named(g.fields) == named])
        erased += 1
    return erased


def _named(fields: dict) -> bytes | None:
    named = fields.get("refers_to")
    try:
        return bytes.fromhex(named) if isinstance(named, str) and len(named) == 32 else None
    except ValueError:
        return None
