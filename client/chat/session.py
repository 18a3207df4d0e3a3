"""The trio side of the chat app: the device's live session (client/live.py) and what the app
asks of the device, run as a trio guest on the app's loop (client/chat/bridge.py).

Everything that reaches the app goes as a textual message (``post``): a :class:`LiveUpdate`
per live event, after what it brought was marked shown on the device (the app shows it from the
device's history). When the session ends by itself (the device was removed: a final error),
the guest run ends with that error, which the app waits for."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from textual.message import Message

from sonet.core.cards import Event, Location
from sonet.core.errors import ProtocolError
from sonet.core.poll import Poll

from ..attachments import FileSendResult, Progress
from ..connection import ConnectError, NodeError
from ..directory import Lookup
from ..groups.api import GroupInfoView, GroupSendResult, GroupView
from ..calls import NO_MEDIA_SDP
from ..history import History
from ..polls import PostResult
from ..state_call import KeptCall
from ..live import LiveEvent, LiveSession, Received
from ..sdk import Device, GestureResult, SafetyNumber, SendResult
from .bridge import TrioGuest
from .compose import Post

__all__ = ["ChatSession", "LiveUpdate", "ContactInfo"]


class LiveUpdate(Message):
    """One event of the live session (client/live.py), for the app to show."""

    def __init__(self, event: LiveEvent) -> None:
        super().__init__()
        self.event = event


class ContactInfo:
    """What the contact screen shows: the safety number and the key-directory lookup, each
    with why it could not be had (the node may be unreachable)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.safety: SafetyNumber | None = None
        self.lookup: Lookup | None = None
        self.error = ""


class ChatSession:
    def __init__(self, device: Device, post: Callable[[Message], object], *, read_receipts: bool = True) -> None:
        self.device = device
        self.history = History(device.state)
        self.read_receipts = read_receipts
        self._post = post
        self._live: LiveSession | None = None

    @property
    def online(self) -> bool:
        return self._live is not None and self._live.online

    async def run(self, guest: TrioGuest) -> None:
        """The guest's main task: open the live session and pass its events on until it ends."""
        async with self.device.live() as live:
            self._live = live
            try:
                async for event in live.events():
                    if isinstance(event, Received):
                        self._mark_shown(event)
                    self._post(LiveUpdate(event))
            finally:
                self._live = None

    def _mark_shown(self, event: Received) -> None:
        """The app shows messages from the history, where these are now: `recv` must not show
        them again."""
        state = self.device.state
        state.mark_shown([m.id for m in event.messages])
        state.mark_group_messages_shown([(m.group, m.seq) for m in event.group_messages])
        state.mark_group_events_shown([(e.group, e.seq) for e in event.group_events])

    def _session(self) -> LiveSession:
        if self._live is None:
            raise ConnectError("the device session is not open yet")
        return self._live

    # What the app asks (each run in the guest through TrioGuest.call) --------------------

    async def send(self, conversation: str, text: str, *, is_group: bool) -> SendResult | GroupSendResult:
        live = self._session()
        if is_group:
            return await live.send_group(conversation, text)
        return await live.send_text(conversation, text)

    async def gesture(self, kind: str, message_id: bytes, arg: str) -> GestureResult:
        """reply, react, unreact, edit, delete (for everyone) or delete-here (on this device
        only) ``message_id`` (client/chat/commands.py, client/chat/actions.py)."""
        live = self._session()
        if kind == "reply":
            return await live.reply(message_id, arg)
        if kind in ("react", "unreact"):
            return await live.react(message_id, arg, remove=kind == "unreact")
        if kind == "edit":
            return await live.edit(message_id, arg)
        return await live.delete(message_id, everyone=kind != "delete-here")

    async def typing(self, conversation: str, *, started: bool) -> None:
        """Best effort: a typing notice that cannot go now is not worth an error."""
        if self._live is None:
            return
        with suppress(ConnectError, NodeError, ProtocolError):
            await self._live.send_typing(conversation, started=started)

    async def read(self, conversation: str) -> None:
        """Mark what was received in ``conversation`` read; with read receipts, tell the senders
        (best effort: offline they are not sent, the mark stays)."""
        unread = self.history.unread(conversation)
        self.history.mark_read(conversation)
        ids = [i for ids in unread.values() for i in ids]
        if ids and self.read_receipts and self._live is not None:
            with suppress(ConnectError, NodeError, ProtocolError):
                await self._live.send_read(conversation, ids)

    # The Device operations the live session does not carry open a connection of their own,
    # inside the session's exclusive() so they never interleave with a receive batch or a send.

    async def contact(self, address: str) -> ContactInfo:
        info = ContactInfo(address)
        try:
            async with self._session().exclusive():
                info.safety = await self.device.safety_number(address)
                info.lookup = await self.device.lookup(address)
        except (ConnectError, NodeError, ProtocolError) as exc:
            info.error = str(exc)
        return info

    async def send_file(self, conversation: str, path: Path, caption: str, *, is_group: bool, progress: Progress) -> FileSendResult:
        """Upload ``path`` and send it (client/attachments.py); receiving waits meanwhile."""
        async with self._session().exclusive():
            if is_group:
                return await self.device.group_send_file(conversation, path, caption, progress=progress)
            return await self.device.send_file(conversation, path, caption, progress=progress)

    async def download(self, message_id: bytes, folder: Path, *, progress: Progress) -> Path:
        """Save the file of ``message_id`` in ``folder`` (digests checked); the path it got."""
        async with self._session().exclusive():
            return await self.device.download(message_id, folder, progress=progress)

    async def vote(self, poll_id: bytes, option: int, *, remove: bool) -> GestureResult:
        """Vote for (or take back) option ``option`` (from 0) of a poll (client/polls.py)."""
        async with self._session().exclusive():
            return await self.device.vote(poll_id, str(option + 1), remove=remove)

    async def post(self, conversation: str, post: Post) -> PostResult:
        """Send a poll, location, event or contact card typed in the compose box (client/chat/compose.py)."""
        device, value = self.device, post.value
        async with self._session().exclusive():
            if isinstance(value, Poll):
                return await device.send_poll(conversation, value.question, value.options, multiple=value.multiple)
            if isinstance(value, Location):
                return await device.send_location(conversation, value)
            if isinstance(value, Event):
                return await device.send_event(conversation, value)
            return await device.send_contact(conversation, value)

    async def call(self, address: str) -> KeptCall:
        """Call ``address``: signalling only (an offer without media)."""
        async with self._session().exclusive():
            return await self.device.call(address, NO_MEDIA_SDP)

    async def hang_up(self, call_id: bytes) -> KeptCall:
        async with self._session().exclusive():
            return await self.device.hang_up(call_id)

    async def answer_call(self, call_id: bytes) -> KeptCall:
        """Accept a call that rings here: signalling only (client/calls.py NO_MEDIA_SDP)."""
        async with self._session().exclusive():
            return await self.device.answer_call(call_id, NO_MEDIA_SDP)

    async def reject_call(self, call_id: bytes) -> KeptCall:
        async with self._session().exclusive():
            return await self.device.reject_call(call_id)

    async def group_info(self, group: str) -> GroupInfoView:
        return await self.device.group_info(group)  # the device's own record: no connection

    async def group_add(self, group: str, member: str) -> GroupView:
        async with self._session().exclusive():
            return await self.device.group_add(group, [member])

    async def group_remove(self, group: str, member: str) -> GroupView:
        async with self._session().exclusive():
            return await self.device.group_remove(group, member)
