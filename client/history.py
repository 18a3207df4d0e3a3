"""The device's history: its conversations (1:1 and groups) and their messages, read from what
the device keeps sealed in state.db (client/state_history.py), with no connection.

A conversation's key is a contact's address ("bob@beta") or a group's id as 32 hex digits
(``resolve`` turns what a user types into one). Its messages are this device's own texts
(``sent``, ``group_sent``: their state is how far they got, ``DeviceState.sent_message``),
the account's texts from its other devices (synced 1:1 texts in the inbox, group texts in the
group's inbox: ``mine`` too) and the texts received (``received`` until the conversation is
read, then ``read``). Receipts, typing notices and alerts are not messages: receipts change
the states of the texts they name.

Room for issue 17 (replies, edits, reactions, deletes...): every stored message has a ``type``
and a map of its fields (a sent body, an inbox body); a new content type that is a message of
its own is added to ``HISTORY_TYPES`` and read into a ``HistoryItem`` of its type, and one that
refers to another message (an edit, a reaction, a delete) folds into the item it names before
the items are returned, the way receipts already change states here. ``HistoryItem`` then
grows fields with defaults, so the ones below keep their meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

from sonet.core.address import parse_address
from sonet.core.errors import LocalProtocolError
from sonet.core.groups.items import GROUP_ID_LEN, group_hex

from .groups.api import find_group
from .state import DeviceState
from .state_history import StoredMessage

__all__ = ["Conversation", "HistoryItem", "History"]


@dataclass(frozen=True, kw_only=True)
class Conversation:
    key: str  # a contact's address ("bob@beta"), or a group's id as 32 hex digits
    title: str  # the address, or the group's name (its id when it has none)
    is_group: bool
    last_text: str  # "" when none
    last_at: int  # ms; 0 when none
    unread: int  # received texts after the read mark


@dataclass(frozen=True, kw_only=True)
class HistoryItem:
    id: bytes
    conversation: str
    sender: str  # account address; this account's for own messages (any of its devices)
    mine: bool
    at: int  # sent_at (ms)
    type: str  # "text" for now (issue 17 adds more)
    text: str  # "" for a text this device sent before it kept texts
    #: mine: SentMessage.state ("pending", "sent", "accepted", "queued", "ordered", "delivered",
    #: "read", "failed"; a text of another of the account's devices: "sent" ("ordered" in a
    #: group) until a receipt names it); theirs: "received" or "read"
    state: str
    note: str  # why pending / queued / failed, else ""


#: what a group text waiting on this device says when its row holds no reason
_WAITING = "waits on this device to be sent"


class History:
    def __init__(self, state: DeviceState) -> None:
        self._state = state

    def resolve(self, name: str) -> str:
        """An address (user@node), a group's id (32 hex digits) or a group's name on this device
        -> the conversation's key; a clear LocalProtocolError when it is none of them."""
        if "@" in name:
            return str(parse_address(name))
        try:  # without an '@' it names a group, as for `sonet send`
            return group_hex(find_group(self._state, name).id)
        except LocalProtocolError as exc:
            if exc.code != "unknown_group":
                raise  # two groups of that name: the error lists their ids
            raise LocalProtocolError(
                f"no conversation {name!r}: give an address (user@node), or a group's id or name (`sonet group list` shows them)",
                code="unknown_group",
            ) from None

    def conversations(self) -> list[Conversation]:
        """Every 1:1 conversation with a message and every group, newest activity first (a
        group without messages counts from when it came to this device)."""
        state = self._state
        me = state.profile().address
        unread_direct, unread_groups = state.unread_counts(me)
        found: list[tuple[int, Conversation]] = []
        for peer in state.direct_peers():
            last = self._newest(state.direct_history(peer, 1))
            conversation = Conversation(
                key=peer, title=peer, is_group=False, last_text=last.fields.get("text", "") if last else "",
                last_at=last.at if last else 0, unread=unread_direct.get(peer, 0),
            )  # fmt: skip
            found.append((conversation.last_at, conversation))
        for group, created in state.group_created().items():
            last = self._newest(state.group_history(group, 1))
            conversation = Conversation(
                key=group_hex(group), title=state.group_name(group) or group_hex(group), is_group=True,
                last_text=last.fields.get("text", "") if last else "", last_at=last.at if last else 0, unread=unread_groups.get(group, 0),
            )  # fmt: skip
            found.append((conversation.last_at or created, conversation))
        found.sort(key=lambda f: (-f[0], f[1].title))
        return [conversation for _at, conversation in found]

    def messages(self, conversation: str, *, limit: int = 50) -> list[HistoryItem]:
        """The newest ``limit`` messages of ``conversation`` (a key, or anything ``resolve``
        takes), oldest first."""
        if limit < 1:
            return []
        key, peer, group = self._target(conversation)
        state = self._state
        stored = state.direct_history(peer, limit) if group is None else state.group_history(group, limit)
        newest: dict[bytes, StoredMessage] = {}
        for m in sorted(stored, key=_newest_first):
            if m.id not in newest or m.own:  # a text both sent here and synced back: this device's row
                newest[m.id] = m
        chosen = sorted(newest.values(), key=_newest_first)[:limit]
        me = state.profile().address
        receipts: dict[bytes, str] | None = None
        items = []
        for m in reversed(chosen):
            state_, note = "received" if m.unread else "read", ""
            if m.own:
                sent = state.sent_message(m.id)
                state_ = sent.state if sent is not None else "sent"
                if sent is not None and state_ in ("pending", "queued", "failed"):
                    note = sent.message or sent.code or (_WAITING if state_ == "pending" else "")
            elif m.sender == me:  # from another of this account's devices
                if group is not None:
                    state_ = "ordered"  # it came back in the group's order
                else:
                    if receipts is None:
                        receipts = state.receipts_from(peer)
                    state_ = receipts.get(m.id, "sent")
            items.append(
                HistoryItem(
                    id=m.id, conversation=key, sender=me if m.own else m.sender, mine=m.own or m.sender == me, at=m.at, type=m.type,
                    text=m.fields.get("text", ""), state=state_, note=note,
                )  # fmt: skip
            )
        return items

    def unread(self, conversation: str) -> dict[str, list[bytes]]:
        """The received texts of ``conversation`` not read yet: sender -> ids, in the order
        received (what read receipts name)."""
        _key, peer, group = self._target(conversation)
        me = self._state.profile().address
        rows = self._state.unread_direct(peer, me) if group is None else self._state.unread_group(group, me)
        out: dict[str, list[bytes]] = {}
        for sender, msg_id in rows:
            out.setdefault(sender, []).append(msg_id)
        return out

    def mark_read(self, conversation: str) -> None:
        """Every received text of ``conversation`` is read from now on."""
        _key, peer, group = self._target(conversation)
        if group is None:
            self._state.mark_direct_read(peer)
        else:
            self._state.mark_group_read(group)

    def _target(self, conversation: str) -> tuple[str, str, bytes | None]:
        """(key, peer address, None) of a 1:1 conversation or (key, "", group id) of a group's."""
        if "@" not in conversation and len(conversation) == 2 * GROUP_ID_LEN:  # a key, as a rule: nothing to open
            try:
                group = bytes.fromhex(conversation)
            except ValueError:
                group = b""  # a group's name that is 32 characters long
            if group in self._state.group_created():
                return group_hex(group), "", group
        key = self.resolve(conversation)  # a name, or an id of no group here (refused)
        return (key, key, None) if "@" in key else (key, "", bytes.fromhex(key))

    @staticmethod
    def _newest(stored: list[StoredMessage]) -> StoredMessage | None:
        return min(stored, key=_newest_first, default=None)


def _newest_first(m: StoredMessage) -> tuple[int, int, int]:
    return (-m.at, -int(m.own), -m.order)
