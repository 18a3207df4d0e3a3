"""Disappearing messages on the device (issue 17 item 4; core/timer.py, docs/protocol.md).

``sonet timer ADDRESS 1h|off`` sends a ``timer`` message: either side of a 1:1 conversation may
set it, both see it (``recv``, ``history``), the latest one wins on every device
(client/state_timer.py). While it is on, every message one writes to that conversation (a text,
reply, reaction, edit, delete or file: ``EXPIRING``) carries ``expires = sent_at + timer``
(``timed``), its envelopes expire then on every node (client/sdk.py ``_deliver``), and each
device that keeps it erases it then: ``erase_due`` runs when the device is opened, on each
receive, when the history is read, and in a live session at each message's time
(``erase_loop``). A message that arrives after its time is erased as it is stored.

``sonet timer GROUP 1h|off`` does the same in a group (``set_group_timer``): any member may set
it, it takes effect in the group's order on every member's device, and while it is on every
message written in the group carries its expiry in its (end-to-end encrypted) content, so every
device erases it then; the hub and the member nodes keep the group item for the node's TTL
(the group submission carries no expiry yet: docs/groups.md "Not yet").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import trio

from sonet.core import limits
from sonet.core.address import parse_address
from sonet.core.content import EXPIRING, TIMER, Content
from sonet.core.errors import LocalProtocolError
from sonet.core.groups.items import group_hex
from sonet.core.timer import expiry_of, format_duration, timer_problem, wake_delay_s

from .prekeys import maintain_prekeys
from .state import DeviceState

if TYPE_CHECKING:
    from .sdk import Device

__all__ = ["TimerResult", "timed", "after_stored", "erase_due", "erase_loop", "set_timer", "set_group_timer", "timer_text", "CHECK_S"]

#: a live session looks again this often for messages kept meanwhile that disappear sooner
CHECK_S = 1.0


@dataclass(frozen=True, kw_only=True)
class TimerResult:
    id: bytes
    conversation: str
    timer: int  # ms; 0: off
    devices: int
    state: str  # "accepted" (same node) or "sent"; a group's: "ordered", "queued" or "pending" (client/groups/api.py)


def timer_text(timer: int) -> str:
    """How a timer message reads in ``recv``, ``history`` and the chat app."""
    return "turned disappearing messages off" if timer == 0 else f"set disappearing messages to {format_duration(timer)}"


def timed(state: DeviceState, conversation: str, content: Content) -> Content:
    """``content`` with its expiry when it is a message one writes and the conversation's
    timer is on (one already timed keeps its own)."""
    if content.type not in EXPIRING or content.expires is not None:
        return content
    expires = expiry_of(content.sent_at, state.conversation_timer(conversation))
    return content if expires is None else replace(content, expires=expires)


def after_stored(state: DeviceState, content: Content, *, conversation: str, now: int) -> None:
    """A message was sent or kept (a sync: the message it carries): a timer message sets the
    conversation's timer; a timed one disappears at its time (at once if that has passed)."""
    message = content.message()
    if message.type == TIMER and message.timer is not None:
        state.set_conversation_timer(conversation, message.timer, set_at=message.sent_at, set_id=message.id)
    if message.expires is not None:
        state.note_expiry(message.id, message.expires)
        if message.expires <= now:
            state.erase_expired(now)


def erase_due(state: DeviceState, now: int) -> list[bytes]:
    """Erase the messages whose time came; their ids."""
    if state.next_expiry() is None:  # the common case: one indexed read, no write
        return []
    return state.erase_expired(now)


async def erase_loop(state: DeviceState, clock: Callable[[], int], on_erased: Callable[[list[bytes]], None] | None = None) -> None:
    """Until cancelled (a live session): erase each message at its time, looking again every
    ``CHECK_S`` for messages kept meanwhile; ``on_erased(ids)`` after each erasure."""
    while True:
        now = clock()
        erased = erase_due(state, now)
        if erased and on_erased is not None:
            on_erased(erased)
        await trio.sleep(wake_delay_s(now, [state.next_expiry()], longest_s=CHECK_S))


async def set_timer(device: Device, address: str, timer: int) -> TimerResult:
    """Set the timer of the 1:1 conversation with ``address`` (ms; 0: off), for both sides, or
    of a group (``address`` is its id or name here: no ``@``)."""
    problem = timer_problem(timer)
    if problem is not None:
        raise LocalProtocolError(problem, code="bad_timer")
    if "@" not in address:
        return await set_group_timer(device, address, timer)
    state = device.state
    profile = state.profile()
    to = parse_address(address)
    if str(to) == profile.address:
        raise LocalProtocolError("a timer is set on a conversation with someone else", code="bad_timer")
    now = device._clock()
    content = Content.make_timer(id=device._rng(limits.CONTENT_ID_LEN), sent_at=now, timer=timer)
    async with device._connect(profile) as conn:  # which first sends the texts that wait
        home = conn.welcome.node
        await maintain_prekeys(conn, state, profile, device._rng, now)
        devices, _own = await device._send_content_now(conn, profile, to, content)
    sent_state = "accepted" if to.node == home else "sent"
    state.record_sent(content.id, str(to), now, devices, state=sent_state, kind=TIMER, fields={"timer": timer})
    return TimerResult(id=content.id, conversation=str(to), timer=timer, devices=devices, state=sent_state)


async def set_group_timer(device: Device, group: str, timer: int) -> TimerResult:
    """Set a group's timer (ms; 0: off). Any member may (groups have no rule that keeps it to
    admins): a timer message sent in the group like a text, which takes effect on every
    member's device, this one's too, in the group's order (client/groups/engine.py).
    ``devices`` is 0: the hub's copies reach the member nodes, not a count of devices."""
    problem = timer_problem(timer)
    if problem is not None:
        raise LocalProtocolError(problem, code="bad_timer")
    groups = device._groups()
    group_id = group_hex(groups.find(group).id)
    content = Content.make_timer(id=device._rng(limits.CONTENT_ID_LEN), sent_at=device._clock(), timer=timer)
    sent = await groups.send_content(group_id, content)
    return TimerResult(id=content.id, conversation=group_id, timer=timer, devices=0, state=sent.state)
