"""Typing in a group (docs/groups.md, "Receipts and typing").

A typing notice is not a group message: the hub does not order it and no node stores it. The
device sends a ``group_typing`` content (core/content.py: the state and the group id) 1:1,
sealed sender, as an ephemeral envelope, to every device of each member account, the way
``sonet typing ADDRESS`` does (``Device._deliver``; the member's node pushes it to connected
devices and drops it otherwise; for members of other nodes the home node sends it on at once,
best effort: federation/ephemeral.py). A member account whose devices cannot be written to
now is skipped and its devices counted (``elsewhere``).

A receiving device takes it only for a group it is an active member of and only from a member
device of that group (anyone else naming the group is refused as ``not_member``); a device of
a member account that is not in the group (linked since) drops it without a word.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sonet.core import limits
from sonet.core.address import Address, parse_address
from sonet.core.content import GROUP_TYPING, Content, encode_content
from sonet.core.envelope import Kind
from sonet.core.errors import LocalProtocolError, ProtocolError, VerifyError
from sonet.core.groups.items import group_hex
from sonet.core.mls.group import Group

from ..connection import Connection, NodeError
from ..directory import IdentityChanged
from ..state import DeviceState, InboxMessage, Profile
from .ops import member_devices
from .store import GroupRecord

__all__ = ["GroupTypingResult", "send_group_typing", "group_typing_message"]

#: Device._deliver: (conn, profile, to, content, own_copy, msg_id, kind) -> (their devices, own devices)
Deliver = Callable[[Connection, Profile, Address, bytes, bytes | None, bytes, Kind], Awaitable[tuple[int, int]]]


@dataclass(frozen=True, kw_only=True)
class GroupTypingResult:
    group: str  # 32 hex digits
    name: str
    typing: str  # "started" or "stopped"
    #: member devices it went to (pushed if connected, on this node or another)
    devices: int
    #: member devices it did not go to: of accounts whose devices could not be written to now
    elsewhere: int


async def send_group_typing(
    conn: Connection, state: DeviceState, profile: Profile, record: GroupRecord, *, started: bool,
    rng: Callable[[int], bytes], clock: Callable[[], int], deliver: Deliver,
) -> GroupTypingResult:  # fmt: skip
    """Tell the members of ``record``'s group, on any node, that this account started (or
    stopped) typing there."""
    if not record.active:
        raise LocalProtocolError("this device is no longer a member of the group", code="not_member")
    devices: dict[str, int] = {}
    for account, _device in member_devices(Group.from_bytes(record.mls)):
        if account != profile.address:
            devices[account] = devices.get(account, 0) + 1
    msg_id = rng(limits.CONTENT_ID_LEN)
    typing = "started" if started else "stopped"
    content = encode_content(Content.make_group_typing(id=msg_id, sent_at=clock(), typing=typing, group=record.id))
    reached = 0
    for account in sorted(devices):
        try:
            await deliver(conn, profile, parse_address(account), content, None, msg_id, Kind.EPHEMERAL)
        except (IdentityChanged, NodeError, ProtocolError):
            continue  # a typing notice is a courtesy: one account that cannot be written to now does not stop it
        reached += devices[account]
    return GroupTypingResult(
        group=group_hex(record.id), name=record.name, typing=typing, devices=reached, elsewhere=sum(devices.values()) - reached
    )


def group_typing_message(
    state: DeviceState, content: Content, *, sender: str, device: int, received_at: int
) -> InboxMessage | None:
    """The inbox entry of a verified ``group_typing`` from ``sender``'s ``device``: None when
    this device is not (or no longer) in the group; VerifyError when the sender is not."""
    assert content.type == GROUP_TYPING and content.group is not None and content.typing is not None  # decode_content
    record = state.group_record(content.group)
    if record is None or not record.active:
        return None
    if (sender, device) not in member_devices(Group.from_bytes(record.mls)):
        raise VerifyError(f"a typing notice for group {group_hex(record.id)} from a device not in it", code="not_member")
    return InboxMessage(
        id=content.id, sender=sender, peer=sender, sent_at=content.sent_at, received_at=received_at, type="typing",
        fields={"typing": content.typing, "group": {"id": group_hex(record.id), "name": record.name}},
    )  # fmt: skip
