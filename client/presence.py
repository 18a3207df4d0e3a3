"""Opt-in presence (issue 17 item 5): "online" and "last seen", only for the contacts allowed.

Off by default: a device with presence off sends none, ever. ``sonet presence on`` shares it
with every account this device has a 1:1 conversation with (at most ``MAX_PRESENCE_CONTACTS``,
the most recent first); ``--to ADDRESS...`` with those accounts only (the list replaces the
previous one); ``off`` stops it (nothing more is sent: the contacts' view of this account goes
stale after ``PRESENCE_FRESH_MS``). The setting is this device's own, kept in its (encrypted)
state.

What is sent: a ``presence`` content (core/content.py, ``online`` or ``offline``) 1:1, sealed
sender, as an ephemeral envelope to every device of each allowed contact (their nodes push it
to connected devices and store it nowhere; across nodes too: federation/ephemeral.py). A live
session (client/live.py) sends ``online`` when it connects and every ``PRESENCE_REFRESH_S``
while it stays, and ``offline`` when it closes; ``sent_at`` of an ``offline`` is the "last
seen" time. A contact whose devices cannot be written to now is skipped: presence is a
courtesy, never kept to send later.

A receiving device shows the newest presence of each sender (``recv``: type ``presence``;
``last_presence``): ``online`` only while it is fresher than ``PRESENCE_FRESH_MS`` (a device
that vanished without its ``offline`` looks offline soon), else "last seen" at its time.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sonet.core import limits
from sonet.core.address import Address, parse_address
from sonet.core.errors import LocalProtocolError, ProtocolError

if TYPE_CHECKING:  # client/cli_presence.py reads the limits below while `sonet --help` builds its parser
    from .connection import Connection
    from .state import DeviceState, Profile

__all__ = [
    "PresenceSetting", "PresenceResult", "presence_setting", "set_presence", "presence_targets", "send_presence", "last_presence",
    "MAX_PRESENCE_CONTACTS", "PRESENCE_REFRESH_S", "PRESENCE_FRESH_MS",
]  # fmt: skip

#: contacts one device shares its presence with at most (each costs a send per announcement)
MAX_PRESENCE_CONTACTS = 100
#: how often a live session says "online" again while it stays connected
PRESENCE_REFRESH_S = 240.0
#: how long a received "online" counts (two refreshes and some slack)
PRESENCE_FRESH_MS = int(2.5 * PRESENCE_REFRESH_S * 1000)
_KEY = "presence"

if TYPE_CHECKING:
    from sonet.core.envelope import Kind

    #: Device._deliver: (conn, profile, to, content, own_copy, msg_id, kind) -> (their devices, own devices)
    Deliver = Callable[[Connection, Profile, Address, bytes, bytes | None, bytes, Kind], Awaitable[tuple[int, int]]]


@dataclass(frozen=True, kw_only=True)
class PresenceSetting:
    on: bool = False
    #: the accounts allowed; empty with ``on``: every 1:1 contact
    to: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class PresenceResult:
    presence: str  # "online" or "offline"
    #: contacts it went to, and those whose devices could not be written to now
    told: tuple[str, ...]
    missed: tuple[str, ...]


def presence_setting(state: DeviceState) -> PresenceSetting:
    raw = state.get(_KEY)
    if raw is None:
        return PresenceSetting()
    value = json.loads(raw)
    return PresenceSetting(on=bool(value["on"]), to=tuple(value["to"]))


def set_presence(state: DeviceState, *, on: bool, to: Sequence[str] = ()) -> PresenceSetting:
    """Turn presence on (for ``to``, or every 1:1 contact) or off; LocalProtocolError
    (``bad_address``) for an address that is not one, or ``to`` with ``off``."""
    if to and not on:
        raise LocalProtocolError("presence off takes no --to: it is shared with nobody", code="bad_input")
    me = state.profile().address
    accounts: list[str] = []
    for address in to:
        account = str(parse_address(address))  # LocalProtocolError bad_address, one line
        if account == me:
            raise LocalProtocolError("presence is shared with your contacts, not with your own account", code="bad_input")
        if account not in accounts:
            accounts.append(account)
    if len(accounts) > MAX_PRESENCE_CONTACTS:
        raise LocalProtocolError(f"presence is shared with at most {MAX_PRESENCE_CONTACTS} contacts", code="bad_input")
    setting = PresenceSetting(on=on, to=tuple(accounts))
    state.put(_KEY, json.dumps({"on": setting.on, "to": list(setting.to)}).encode())
    return setting


def presence_targets(state: DeviceState) -> list[str]:
    """Whom this device's presence goes to now: nobody while it is off."""
    setting = presence_setting(state)
    if not setting.on:
        return []
    if setting.to:
        return list(setting.to)
    me = state.profile().address
    return [peer for peer in state.direct_peers() if peer != me][:MAX_PRESENCE_CONTACTS]


async def send_presence(
    conn: Connection, state: DeviceState, profile: Profile, *, online: bool,
    rng: Callable[[int], bytes], clock: Callable[[], int], deliver: Deliver,
) -> PresenceResult | None:  # fmt: skip
    """Tell the allowed contacts this account is online (or offline now); None (nothing sent)
    while presence is off."""
    from sonet.core.content import Content, encode_content  # (`sonet --help` reads this module's bounds)
    from sonet.core.envelope import Kind

    from .connection import NodeError
    from .directory import IdentityChanged

    targets = presence_targets(state)
    if not targets:
        return None
    presence = "online" if online else "offline"
    msg_id = rng(limits.CONTENT_ID_LEN)
    content = encode_content(Content.make_presence(id=msg_id, sent_at=clock(), presence=presence))
    told, missed = [], []
    for account in targets:
        try:
            await deliver(conn, profile, parse_address(account), content, None, msg_id, Kind.EPHEMERAL)
        except (IdentityChanged, NodeError, ProtocolError):
            missed.append(account)  # a courtesy: one contact that cannot be written to now does not stop it
            continue
        told.append(account)
    return PresenceResult(presence=presence, told=tuple(told), missed=tuple(missed))


def last_presence(state: DeviceState, account: str, *, now: int) -> tuple[str, int] | None:
    """(``online`` or ``offline``, at) of ``account`` as this device last heard, an ``online``
    older than ``PRESENCE_FRESH_MS`` read as ``offline`` at its time; None if never heard."""
    seen = state.newest_presence(account)
    if seen is None:
        return None
    if seen.presence == "online" and now - seen.sent_at > PRESENCE_FRESH_MS:
        return "offline", seen.sent_at
    return seen.presence, seen.sent_at
