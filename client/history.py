"""The device's history: its conversations (1:1 and groups) and their messages, read from what
the device keeps sealed in state.db (client/state_history.py), with no connection.

A conversation's key is a contact's address ("bob@beta") or a group's id as 32 hex digits
(``resolve`` turns what a user types into one). Its messages are this device's own texts
(``sent``, ``group_sent``: their state is how far they got, ``DeviceState.sent_message``),
the account's texts from its other devices (synced 1:1 texts in the inbox, group texts in the
group's inbox: ``mine`` too) and the texts received (``received`` until the conversation is
read, then ``read``). Receipts, typing notices and alerts are not messages: receipts change
the states of the texts they name.

Issue 17: every stored message has a ``type`` and a map of its fields (a sent body, an inbox
body). A reply is a message of its own (``HISTORY_TYPES``): its item names the message it
quotes (``refers_to``), that message's first line as it reads now (``quote``) and the thread
it belongs to (``thread``: the first message of its chain of replies). Reactions, edits and
deletes fold into the item they name before the items are returned (client/history_fold.py:
who may, and what a gesture naming an unknown message does), the way receipts change states.
A message deleted for me (on this device only) is not returned at all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sonet.core.address import parse_address
from sonet.core.errors import LocalProtocolError
from sonet.core.groups.items import GROUP_ID_LEN, group_hex
from sonet.core.poll import Tally

from .history_fold import Folded, Reaction, Target, first_line, fold
from .rich_fields import RICH_MESSAGES, poll_of, rich_line
from .state import DeviceState
from .state_history import StoredMessage

__all__ = ["Conversation", "HistoryItem", "History", "Reaction"]


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
    #: a reply: the message it quotes, that message's first line now ("" when this device does
    #: not hold it, or it was deleted) and its thread (the first message of the chain)
    refers_to: bytes | None = None
    quote: str = ""
    thread: bytes | None = None
    #: how many times its author edited it, and the texts before (oldest first)
    edited: int = 0
    versions: tuple[str, ...] = ()
    reactions: tuple[Reaction, ...] = ()
    #: deleted for everyone by its author: ``text`` is "" (a placeholder)
    deleted: bool = False
    #: a timer message: the conversation's new timer in ms (0: off); client/timer.py
    timer: int | None = None
    #: a disappearing message: when it disappears (ms)
    expires: int | None = None
    #: a file: what its message carries (client/file_fields.py; its key too, never printed)
    file: dict | None = None
    #: a location, contact card, event or poll: its map as its content carries it (client/rich_fields.py)
    data: dict | None = None
    #: a poll: its result from the votes and closes this device holds (core/poll.py tally)
    poll_result: Tally | None = None


#: a reply chain longer than this is cut there (its thread is where the walk stopped)
_MAX_THREAD_DEPTH = 200


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
        from .groups.api import find_group  # MLS, imported only when a group is named

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
                key=peer, title=peer, is_group=False, last_text=self._last_text(last, me, peer=peer),
                last_at=last.at if last else 0, unread=unread_direct.get(peer, 0),
            )  # fmt: skip
            found.append((conversation.last_at, conversation))
        for group, created in state.group_created().items():
            last = self._newest(state.group_history(group, 1))
            conversation = Conversation(
                key=group_hex(group), title=state.group_name(group) or group_hex(group), is_group=True,
                last_text=self._last_text(last, me, group=group), last_at=last.at if last else 0, unread=unread_groups.get(group, 0),
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
        hidden = state.hidden_here()  # deleted for me: as if not there
        wanted = limit + len(hidden)
        stored = state.direct_history(peer, wanted) if group is None else state.group_history(group, wanted)
        newest: dict[bytes, StoredMessage] = {}
        for m in sorted(stored, key=_newest_first):
            if m.id in hidden:
                continue
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
                    text=m.fields.get("text", ""), state=state_, note=note, refers_to=_refers_to(m.fields),
                    timer=m.fields.get("timer"), expires=state.message_expiry(m.id), file=m.fields.get("file"),
                    data=m.fields.get(m.type) if m.type in RICH_MESSAGES else None,
                )  # fmt: skip
            )
        return self._fold(items, peer, group, me)

    def _fold(self, items: list[HistoryItem], peer: str, group: bytes | None, me: str) -> list[HistoryItem]:
        """The items with their reactions, edits and deletes, and their replies' quotes."""
        state = self._state
        gestures = state.conversation_gestures(peer=peer or None, group=group)
        known: dict[bytes, tuple[Target, bytes | None]] = {
            i.id: (Target(author=i.sender, at=i.at, text=i.text, poll=poll_of({"poll": i.data}) if i.type == "poll" else None), i.refers_to)
            for i in items
        }
        # the messages the replies quote, and their chains, may be older than these items
        for item in items:
            named, depth = item.refers_to, 0
            while named is not None and named not in known and depth < _MAX_THREAD_DEPTH:
                kept = state.find_message(named, me, peer=peer or None, group=group)
                if kept is None:
                    break  # not held in this conversation: no quote
                fields = state.message_text(kept)
                known[named] = (Target(author=kept.author, at=kept.at, text=fields.get("text", "")), _refers_to(fields))
                named, depth = _refers_to(fields), depth + 1
        if not gestures and not any(i.refers_to or i.type == "poll" for i in items):
            return items
        folded = fold({msg_id: target for msg_id, (target, _r) in known.items()}, gestures, me)
        return [self._folded(i, folded, known, me) for i in items]

    @staticmethod
    def _folded(item: HistoryItem, folded: dict[bytes, Folded], known: dict[bytes, tuple[Target, bytes | None]], me: str) -> HistoryItem:
        mine = folded[item.id]
        quote, thread = "", None
        if item.refers_to is not None:
            quoted = folded.get(item.refers_to)
            quote = first_line(quoted.text) if quoted is not None and not quoted.deleted else ""
            thread, seen = item.refers_to, {item.id}
            while thread in known and known[thread][1] is not None and thread not in seen and len(seen) < _MAX_THREAD_DEPTH:
                seen.add(thread)
                thread = known[thread][1]
        poll = known[item.id][0].poll
        return replace(
            item, text=mine.text, edited=len(mine.versions), versions=tuple(mine.versions), reactions=mine.reactions(me),
            deleted=mine.deleted, quote=quote, thread=thread, poll_result=mine.tally(poll, item.sender) if poll is not None else None,
        )  # fmt: skip

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

    def _last_text(self, last: StoredMessage | None, me: str, *, peer: str | None = None, group: bytes | None = None) -> str:
        """The newest message's text as it reads now: its author's edits (only those made after
        it are looked at, so the list stays cheap); "" once deleted (its text was erased)."""
        if last is None:
            return ""
        edits = self._state.conversation_gestures(peer=peer, group=group, since=last.at, kinds=("edit",))
        if not edits:  # a poll, location, contact card or event: what recv says of it (client/rich_fields.py)
            return last.fields.get("text") or (rich_line(last.type, last.fields) if last.type in RICH_MESSAGES else None) or ""
        author = me if last.own else last.sender
        return fold({last.id: Target(author=author, at=last.at, text=last.fields.get("text", ""))}, edits, me)[last.id].text

    @staticmethod
    def _newest(stored: list[StoredMessage]) -> StoredMessage | None:
        return min(stored, key=_newest_first, default=None)


def _refers_to(fields: dict) -> bytes | None:
    named = fields.get("refers_to")
    try:
        return bytes.fromhex(named) if isinstance(named, str) and len(named) == 32 else None
    except ValueError:
        return None


def _newest_first(m: StoredMessage) -> tuple[int, int, int]:
    return (-m.at, -int(m.own), -m.order)
