"""Replies, reactions, edits and deletes (issue 17) from this device: ``Device.reply``,
``react``, ``edit`` and ``delete`` (client/sdk.py) are these.

A gesture names a message by its content id (the id ``recv``/``history`` print); the
conversation is the one this device keeps that message in (client/state_gestures.py
``find_message``), 1:1 or group. It goes like a text: 1:1 encrypted for every device of the
peer, with a copy for this account's other devices (a ``sync`` carrying it, core/content.py);
in a group as an MLS application message, which every member device gets, the account's own
too. This device keeps it like a text it sent (``sent`` / ``group_sent`` with its type), so
the history folds it (client/history_fold.py) and ``sonet sent`` shows how far it got.

Refused here, before anything is sent (each with its own code): an id this device does not
hold (``unknown_message``), an edit or delete of someone else's message (``not_author``), a
delete for everyone later than ``DELETE_WINDOW_MS`` after the message (``too_late``), a
gesture on a message deleted for everyone (``deleted``), a delete of one still waiting on this
device to be sent (``not_sent_yet``), an id that names messages in more than one conversation
here (``ambiguous_message``: a member of two groups can reuse an id; the command does not
guess). Receivers check the same rules again
(client/history_fold.py): nothing here is trusted by them.

A 1:1 gesture that cannot go now waits on the device as a text does (client/pending.py, the
same caps and order: behind the texts to the same contact that wait, so it never overtakes the
message it names); in a group as a group text does.

Delete for me is local: the message is hidden on this device and its text erased from it.
A delete for everyone of one's own file message deletes its blob from the node first
(client/blob_expiry.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sonet.core import limits
from sonet.core.address import parse_address
from sonet.core.content import DELETE, DELETE_WINDOW_MS, EDIT, FILE, REACTION, REPLY, Content, emoji_problem
from sonet.core.errors import LocalProtocolError, ProtocolError
from sonet.core.groups.items import group_hex

from .blob_expiry import expire_blob
from .connection import ConnectError, NodeError
from .deletes import erase_deleted
from .history_fold import may_change
from .rich_fields import RICH_TYPES, rich_content
from .file_fields import file_ref_of
from .pending import PendingFull, waits
from .prekeys import maintain_prekeys
from .state_pending import PendingSend
from .state_gestures import KeptMessage
from .state_history import content_fields

if TYPE_CHECKING:
    from .groups.api import GroupSendResult
    from .sdk import Device

__all__ = ["GestureResult", "Gestures", "parse_message_id", "waiting_content", "DELETED_HERE"]

#: the state of a message deleted for me: nothing was sent
DELETED_HERE = "deleted_here"
#: a 1:1 gesture kept on the device to send later (client/pending.py)
PENDING = "pending"


@dataclass(frozen=True, kw_only=True)
class GestureResult:
    #: the new message's content id (a delete for me sends nothing: the deleted one's)
    id: bytes
    type: str  # reply, reaction, edit, delete
    refers_to: bytes
    #: the conversation: a contact's address, or a group's id (32 hex digits)
    conversation: str
    is_group: bool
    #: as a sent text's: 1:1 "accepted" or "sent"; a group's "ordered", "queued" or "pending";
    #: ``DELETED_HERE`` for a delete for me
    state: str
    code: str = ""
    message: str = ""


def parse_message_id(text: str) -> bytes:
    """A content id as the user gives it: 32 hex digits."""
    try:
        msg_id = bytes.fromhex(text.strip())
    except ValueError:
        msg_id = b""
    if len(msg_id) != limits.CONTENT_ID_LEN:
        raise LocalProtocolError(f"{text!r} is not a message id (32 hex digits, as `sonet history` prints them)", code="bad_input")
    return msg_id


def waiting_content(entry: PendingSend) -> Content:
    """The content of a reply, reaction, edit or delete (or a poll, vote...: client/rich_fields.py)
    that waited on the device."""
    fields = entry.fields
    if entry.kind in RICH_TYPES:
        return rich_content(entry.kind, entry.id, entry.created, fields)
    if entry.kind == FILE:  # its blob was uploaded before it waited (client/attachments.py)
        return Content.make_file(id=entry.id, sent_at=entry.created, file=file_ref_of(fields), text=fields.get("text", ""))
    refers_to = bytes.fromhex(fields["refers_to"])
    if entry.kind == REPLY:
        return Content.make_reply(id=entry.id, sent_at=entry.created, text=fields["text"], refers_to=refers_to)
    if entry.kind == REACTION:
        return Content.make_reaction(id=entry.id, sent_at=entry.created, refers_to=refers_to, emoji=fields["emoji"], remove=fields["remove"])
    if entry.kind == EDIT:
        return Content.make_edit(id=entry.id, sent_at=entry.created, refers_to=refers_to, text=fields["text"])
    return Content.make_delete(id=entry.id, sent_at=entry.created, refers_to=refers_to)


def _check_text(text: str) -> None:
    if not text:
        raise LocalProtocolError("refusing to send an empty message", code="bad_input")
    if len(text.encode()) > limits.MAX_TEXT_LEN:
        raise LocalProtocolError(f"message is longer than {limits.MAX_TEXT_LEN} bytes (UTF-8)", code="bad_input")


class Gestures:
    def __init__(self, device: Device, *, live: bool = False) -> None:
        """``live``: on a live session's connection (client/live.py): while it is down a 1:1
        gesture waits on the device (code "offline"), and a group one does not wait for the
        hub's order, as the session's texts."""
        self._device = device
        self._state = device.state
        self._live = live

    async def reply(self, msg_id: bytes, text: str) -> GestureResult:
        _check_text(text)
        kept = self._find(msg_id)
        return await self._send(kept, Content.make_reply(id=self._new_id(), sent_at=self._device._clock(), text=text, refers_to=msg_id))

    async def react(self, msg_id: bytes, emoji: str, *, remove: bool = False) -> GestureResult:
        problem = emoji_problem(emoji)
        if problem is not None:
            raise LocalProtocolError(problem, code="bad_input")
        kept = self._find(msg_id)
        content = Content.make_reaction(id=self._new_id(), sent_at=self._device._clock(), refers_to=msg_id, emoji=emoji, remove=remove)
        return await self._send(kept, content)

    async def edit(self, msg_id: bytes, text: str) -> GestureResult:
        _check_text(text)
        kept = self._find(msg_id)
        self._check_author(kept, "edit")
        return await self._send(kept, Content.make_edit(id=self._new_id(), sent_at=self._device._clock(), refers_to=msg_id, text=text))

    async def delete(self, msg_id: bytes, *, everyone: bool = False) -> GestureResult:
        kept = self._find(msg_id, deleted_ok=not everyone)
        if kept.pending:
            raise LocalProtocolError(
                f"message {msg_id.hex()} still waits on this device to be sent: try again once it went (`sonet sent`)", code="not_sent_yet"
            )  # fmt: skip
        now = self._device._clock()
        if not everyone:
            with self._state.transaction():
                self._state.hide_here(msg_id, now)
                self._state.erase_message(kept, self._edits_of(kept))
            return GestureResult(
                id=msg_id, type=DELETE, refers_to=msg_id, conversation=kept.conversation, is_group=kept.group is not None, state=DELETED_HERE,
            )  # fmt: skip
        self._check_author(kept, "delete")
        if now - kept.at > DELETE_WINDOW_MS:
            hours = DELETE_WINDOW_MS // 3_600_000
            raise LocalProtocolError(
                f"too late to delete it for everyone: that is possible for {hours} hours after a message (`--everyone` left out: "
                "delete it on this device only)",
                code="too_late",
            )  # fmt: skip
        if kept.type == FILE:  # its blob goes from the node first (client/blob_expiry.py)
            await self._delete_blob(kept)
        return await self._send(kept, Content.make_delete(id=self._new_id(), sent_at=now, refers_to=msg_id))

    async def _delete_blob(self, kept: KeptMessage) -> None:
        fields = self._state.message_text(kept)
        if "file" not in fields:
            return
        ref = file_ref_of(fields)
        try:
            async with self._device._connect(self._state.profile()) as conn:
                await expire_blob(conn, ref, 0)
        except ConnectError:
            if not self._live:
                raise
            # offline in a live session: the delete waits to go; the blob stays until its retention

    async def send_group(self, group: bytes, content: Content) -> GroupSendResult:
        """Send any message one writes in ``group`` (a live session's does not wait for the hub's order)."""
        return await self._device._groups().send_content(group_hex(group), content, settle=not self._live)

    # The message named ----------------------------------------------------------------------

    def _find(self, msg_id: bytes, *, deleted_ok: bool = False) -> KeptMessage:
        state = self._state
        me = state.profile().address
        found = state.find_messages(msg_id, me)
        if not found or msg_id in state.hidden_here():
            raise LocalProtocolError(
                f"no message {msg_id.hex()} on this device (`sonet history` lists the ids of a conversation)", code="unknown_message"
            )  # fmt: skip
        if len(found) > 1:  # someone reused the id in another conversation: do not guess which
            raise LocalProtocolError(
                f"message id {msg_id.hex()} names messages in {len(found)} conversations on this device: it cannot say which one "
                "(someone reused the id)",
                code="ambiguous_message",
            )  # fmt: skip
        kept = found[0]
        if not deleted_ok and self._deleted(kept, me):
            raise LocalProtocolError(f"message {msg_id.hex()} was deleted for everyone", code="deleted")
        return kept

    def _check_author(self, kept: KeptMessage, what: str) -> None:
        if kept.author != self._state.profile().address:
            raise LocalProtocolError(f"only its author ({kept.author}) can {what} message {kept.id.hex()}", code="not_author")

    def _deleted(self, kept: KeptMessage, me: str) -> bool:
        for g in self._state.conversation_gestures(peer=kept.peer, group=kept.group):
            if g.type == DELETE and g.fields.get("refers_to") == kept.id.hex():
                if may_change(DELETE, by=me if g.own else g.sender, at=g.at, author=kept.author, written_at=kept.at):
                    return True
        return False

    def _edits_of(self, kept: KeptMessage) -> list:
        gestures = self._state.conversation_gestures(peer=kept.peer, group=kept.group)
        return [g for g in gestures if g.type == EDIT and g.fields.get("refers_to") == kept.id.hex()]

    def _new_id(self) -> bytes:
        return self._device._rng(limits.CONTENT_ID_LEN)

    # Sending -----------------------------------------------------------------------------

    async def _send(self, kept: KeptMessage, content: Content) -> GestureResult:
        if kept.group is not None:
            return await self._send_group(kept, content)
        assert kept.peer is not None
        return await self._send_direct(kept, kept.peer, content)

    async def _send_direct(self, kept: KeptMessage, peer: str, content: Content) -> GestureResult:
        sent_state, code, message = await self.send_direct(peer, content)
        return GestureResult(
            id=content.id, type=content.type, refers_to=kept.id, conversation=peer, is_group=False, state=sent_state, code=code,
            message=message,
        )  # fmt: skip

    async def send_direct(self, peer: str, content: Content) -> tuple[str, str, str]:
        """Send any message one writes to ``peer`` (a gesture, or a poll, location...:
        client/polls.py) and keep it: (state, code, message), as a gesture's."""
        device, state = self._device, self._state
        profile = state.profile()
        to = parse_address(peer)
        devices, home = 0, ""
        try:
            async with device._connect(profile) as conn:  # which first sends the texts that wait
                home = conn.welcome.node
                # behind the texts to them that still wait: never before the message it names
                waiting = state.pending_reason(peer)
                if waiting is None:
                    await maintain_prekeys(conn, state, profile, device._rng, device._clock())
                    try:
                        devices, _own = await device._send_content_now(conn, profile, to, content)
                    except (NodeError, ProtocolError) as exc:
                        if not waits(exc):
                            raise
                        waiting = (exc.code, str(exc))
        except ConnectError as exc:
            if not self._live:
                raise
            # the same id: if the node took it before the connection dropped, it keeps one copy
            waiting = ("offline", f"the home node cannot be reached now ({exc})")
        fields = content_fields(content)
        with state.transaction():
            if waiting is not None:
                code, message = waiting
                try:
                    state.add_pending(content.id, peer, fields.get("text", ""), created=content.sent_at, code=code, message=message,
                                      kind=content.type, fields=fields)  # fmt: skip
                except PendingFull as exc:
                    raise LocalProtocolError(f"not sent: {message}; nor kept to send later: {exc}", code="pending_full") from None
                sent_state = PENDING
            else:
                sent_state = "accepted" if to.node == home else "sent"
                state.record_sent(content.id, peer, content.sent_at, devices, state=sent_state, kind=content.type, fields=fields)
            if content.type == DELETE:  # erased here at once, even while the delete waits to go
                erase_deleted(state, profile.address, peer=peer, group=None, delete_id=content.id)
        code, message = waiting or ("", "")
        return sent_state, code, message

    async def _send_group(self, kept: KeptMessage, content: Content) -> GestureResult:
        assert kept.group is not None
        state = self._state
        result = await self.send_group(kept.group, content)
        if content.type == DELETE:
            erase_deleted(state, state.profile().address, peer=None, group=kept.group, delete_id=content.id)
        return GestureResult(
            id=content.id, type=content.type, refers_to=kept.id, conversation=group_hex(kept.group), is_group=True, state=result.state,
            code=result.code, message=result.message,
        )  # fmt: skip
