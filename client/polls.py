"""Polls, votes, closes, locations, contact cards and events from this device (issue 17 item
6): ``Device.send_poll``, ``vote``, ``close_poll``, ``poll_result``, ``send_location``,
``send_contact``, ``send_event`` (client/sdk.py) are these; and call signals
(``Device.send_call_signal``).

A poll, location, contact card or event is a message of its own, sent to a contact (1:1, with
its sync copy for this account's other devices, waiting on the device when it cannot go now)
or in a group, exactly as a gesture goes (client/gestures.py ``send_direct`` / ``send_group``).
A vote or a close names a poll the way a reaction names a message: the same lookup of the
message (``unknown_message``, ``ambiguous_message``, ``deleted``), the same sending; a close
only by the poll's author (``not_author``). Refused here too: a vote or close of a message that
is not a poll (``not_a_poll``), an option it does not have (``bad_option``), a vote on a closed
poll or a second close (``poll_closed``). Receivers do not trust any of it: the tally
(core/poll.py, through client/history_fold.py) ignores what breaks the rules.

A call signal (core/call.py) goes to every device of one contact and no further: not to this
account's other devices, not kept in any history, its envelopes expiring with the ring time
(an offer nobody took in time is worth nothing). Driving a call (which signal to send when) is
core/call.py's state machine, which client/calls.py runs on the device's state (``sonet call``):
there is no media engine here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sonet.core import limits
from sonet.core.address import parse_address
from sonet.core.call import CallSignal, CallTimeouts
from sonet.core.content import POLL, POLL_CLOSE, VOTE, Content, encode_content
from sonet.core.envelope import Kind
from sonet.core.errors import LocalProtocolError
from sonet.core.poll import Poll, Tally

from .gestures import GestureResult, Gestures
from .history import History
from .history_fold import Target, fold
from .prekeys import maintain_prekeys
from .rich_fields import poll_of
from .state_gestures import KeptMessage

if TYPE_CHECKING:
    from .sdk import Device

__all__ = ["PostResult", "Polls", "option_index"]


@dataclass(frozen=True, kw_only=True)
class PostResult:
    """A poll, location, contact card or event sent (states as a gesture's: client/gestures.py)."""

    id: bytes
    type: str
    #: a contact's address, or a group's id (32 hex digits)
    conversation: str
    is_group: bool
    state: str
    code: str = ""
    message: str = ""


def option_index(poll: Poll, option: str) -> int:
    """The 0-based index of ``option`` as a user gives it: its number (from 1) or its exact text."""
    text = option.strip()
    if text.isascii() and text.isdigit() and 1 <= int(text) <= len(poll.options):  # ASCII: ٢ may be an option's text
        return int(text) - 1
    if option in poll.options:
        return poll.options.index(option)
    numbered = ", ".join(f"{i + 1}. {o}" for i, o in enumerate(poll.options))
    raise LocalProtocolError(f"the poll has no option {option!r} (give its number or text: {numbered})", code="bad_option")


class Polls(Gestures):
    """Item 6's messages, on the gestures' lookup and sending (client/gestures.py)."""

    async def post(self, conversation: str, content: Content) -> PostResult:
        """Send a poll, location, contact card or event to ``conversation`` (an address, or a
        group's id or name)."""
        encode_content(content)  # refused here (bad_input), before anything connects or waits
        key = History(self._state).resolve(conversation)
        if "@" in key:
            state, code, message = await self.send_direct(key, content)
            return PostResult(id=content.id, type=content.type, conversation=key, is_group=False, state=state, code=code, message=message)
        sent = await self.send_group(bytes.fromhex(key), content)
        return PostResult(
            id=content.id, type=content.type, conversation=key, is_group=True, state=sent.state, code=sent.code, message=sent.message,
        )  # fmt: skip

    def new_content(self, kind: str, **fields: object) -> Content:
        return Content(type=kind, id=self._new_id(), sent_at=self._device._clock(), **fields)  # type: ignore[arg-type]

    async def vote(self, msg_id: bytes, option: str, *, remove: bool = False) -> GestureResult:
        kept, poll, result = self._poll(msg_id)
        index = option_index(poll, option)
        if result.closed:
            raise LocalProtocolError(f"poll {msg_id.hex()} is closed", code="poll_closed")
        content = Content.make_vote(id=self._new_id(), sent_at=self._device._clock(), refers_to=msg_id, option=index, remove=remove)
        return await self._send(kept, content)

    async def close(self, msg_id: bytes) -> tuple[GestureResult, Poll, Tally]:
        """Close one of this account's polls; its result as this device counts it then."""
        kept, poll, result = self._poll(msg_id)
        self._check_author(kept, "close")
        if result.closed:
            raise LocalProtocolError(f"poll {msg_id.hex()} is already closed", code="poll_closed")
        content = Content.make_poll_close(id=self._new_id(), sent_at=self._device._clock(), refers_to=msg_id)
        sent = await self._send(kept, content)
        return sent, poll, self._poll(msg_id)[2]

    def result(self, msg_id: bytes) -> tuple[Poll, Tally]:
        _kept, poll, result = self._poll(msg_id)
        return poll, result

    def _poll(self, msg_id: bytes) -> tuple[KeptMessage, Poll, Tally]:
        kept = self._find(msg_id)
        poll = poll_of(self._state.message_text(kept)) if kept.type == POLL else None
        if poll is None:
            raise LocalProtocolError(f"message {msg_id.hex()} is a {kept.type}, not a poll", code="not_a_poll")
        me = self._state.profile().address
        gestures = self._state.conversation_gestures(peer=kept.peer, group=kept.group, kinds=(VOTE, POLL_CLOSE))
        folded = fold({kept.id: Target(author=kept.author, at=kept.at, text="", poll=poll)}, gestures, me)[kept.id]
        return kept, poll, folded.tally(poll, kept.author)

    async def call_signal(self, address: str, signal: CallSignal, *, timeouts: CallTimeouts = CallTimeouts()) -> int:
        """Send ``signal`` to every device of ``address``; how many devices it went to."""
        device, state = self._device, self._state
        profile = state.profile()
        to = parse_address(address)
        if str(to) == profile.address:
            raise LocalProtocolError("a call is made to someone else", code="bad_input")
        now = device._clock()
        content = Content.make_call(id=device._rng(limits.CONTENT_ID_LEN), sent_at=now, call=signal)
        async with device._connect(profile) as conn:
            await maintain_prekeys(conn, state, profile, device._rng, now)
            devices, _own = await device._deliver(
                conn, profile, to, encode_content(content), None, content.id, Kind.SEALED, share_access=True, expires=now + timeouts.ring_ms,
            )  # fmt: skip
        return devices
