"""Group messages that wait on the device (docs/groups.md, "Sending"): a ``send`` while the home
node cannot be reached keeps the text, sealed in state.db, as the group's next message to make
(client/groups/api.py), and ``sonet sent`` shows it "pending". Every command that connects sends
what waits (``Device._connect``, client/sdk.py), each text encrypted then, at the epoch the
device is in, in the order written; one the hub then finds stale is made again on top, as any
message (client/groups/engine.py). The text keeps its id, so its receipts are counted as usual.
"""

from __future__ import annotations

from collections.abc import Callable

from sonet.core.content import TEXT, decode_content
from sonet.core.errors import ProtocolError
from sonet.core.groups.items import group_hex

from ..connection import Connection, NodeError
from ..state import DeviceState, Profile

__all__ = ["send_waiting_group_messages"]


async def send_waiting_group_messages(
    conn: Connection, state: DeviceState, profile: Profile, *, rng: Callable[[int], bytes], clock: Callable[[], int]
) -> list[str]:
    """Send the group messages that have not reached the home node; a line per text that went,
    and one if they could not go now (they wait for the next connection)."""
    if not state.unsent_group_messages():
        return []  # every connection asks: without a waiting message, MLS is not even imported
    from .engine import GroupEngine

    waiting = {
        (record.id, s.origin): (record.name or group_hex(record.id), content.id)
        for record in state.group_records_with_own() for s in record.sends
        if not s.submitted for content in (decode_content(s.op["content"]),) if content.type == TEXT
    }  # fmt: skip
    engine = GroupEngine(state, profile, rng=rng, clock=clock)
    notes: list[str] = []
    try:
        await engine.flush(conn)
    except (NodeError, ProtocolError) as exc:
        notes.append(f"could not send the group messages that wait on this device now (the next connection does): {exc}")
    sent = {(record.id, s.origin) for record in state.group_records_with_own() for s in record.sends if s.submitted}
    for key, (name, text_id) in waiting.items():
        if key in sent:
            notes.append(f"sent the message to the group {name} that waited on this device; id {text_id.hex()}")
    return notes + engine.rejected
