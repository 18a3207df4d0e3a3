"""A hub hand-over in parts (docs/groups.md "Hand-over").

The old hub sends the new hub its public state (``HubGroup.to_bytes``, as large as the ratchet
tree: ~4.1 MB for a filled 1,500-device group) in HANDOVER items of at most
``HANDOVER_PART_BYTES`` each, so every part fits one group item and one push. Each part names
itself in its ref (``handover_ref``: part and count) and carries the hand-over commit's epoch,
its sequence number and the new hub, so the parts of one hand-over are recognised as such in
any order, and a duplicate is the same item again.

``split_state`` makes the parts; ``assemble`` puts them back together and refuses anything else
(``invalid``, one line): a part missing, parts of different hand-overs, a part named twice with
different bytes, more parts than a state may have. Whether the state decodes and matches the
hand-over is ``HubGroup.adopt``'s to check (core/groups/hub.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import RemoteProtocolError
from .items import HANDOVER_PART_BYTES, MAX_HANDOVER_STATE_BYTES, GroupItem, ItemKind, handover_part, handover_ref

__all__ = ["split_state", "assemble"]


def split_state(*, group: bytes, epoch: int, seq: int, hub: str, state: bytes) -> tuple[GroupItem, ...]:
    """The HANDOVER items carrying ``state`` to the new hub ``hub``, in order. ValueError if the
    state is empty or larger than MAX_HANDOVER_STATE_BYTES (the hub refuses such a hand-over
    before it orders the commit)."""
    if not 0 < len(state) <= MAX_HANDOVER_STATE_BYTES:
        raise ValueError(f"a hand-over state is 1 to {MAX_HANDOVER_STATE_BYTES} bytes, not {len(state)}")
    chunks = [state[offset : offset + HANDOVER_PART_BYTES] for offset in range(0, len(state), HANDOVER_PART_BYTES)]
    parts = tuple(
        GroupItem(
            kind=ItemKind.HANDOVER, ref=handover_ref(number, len(chunks)), group=group, epoch=epoch, seq=seq, message=chunk,
            welcome=b"", members=(), outcome="", hub=hub,
        )  # fmt: skip
        for number, chunk in enumerate(chunks, start=1)
    )
    for part in parts:
        part.check()
    return parts


def assemble(items: Iterable[GroupItem]) -> tuple[GroupItem, bytes]:
    """(one of the parts, the whole state) of one complete hand-over given as its parts in any
    order (a duplicate is harmless); RemoteProtocolError ``invalid`` otherwise."""
    first: GroupItem | None = None
    count = 0
    chunks: dict[int, bytes] = {}
    for item in items:
        try:
            item.check()
            part, parts = handover_part(item)
        except (ValueError, TypeError) as exc:
            raise _invalid(f"malformed HANDOVER item: {exc}") from None
        if item.kind != ItemKind.HANDOVER:
            raise _invalid("not a HANDOVER item")
        if first is None:
            first, count = item, parts
        elif (item.group, item.epoch, item.seq, item.hub, parts) != (first.group, first.epoch, first.seq, first.hub, count):
            raise _invalid("the parts are of different hand-overs")
        if chunks.setdefault(part, item.message) != item.message:
            raise _invalid(f"part {part} of the hand-over came twice with different bytes")
    if first is None:
        raise _invalid("a hand-over without parts")
    missing = [part for part in range(1, count + 1) if part not in chunks]
    if missing:
        raise _invalid(f"the hand-over lacks part(s) {', '.join(map(str, missing))} of {count}")
    state = b"".join(chunks[part] for part in range(1, count + 1))
    if len(state) > MAX_HANDOVER_STATE_BYTES:  # (parts are bounded each; this bounds them all)
        raise _invalid(f"a hand-over state is at most {MAX_HANDOVER_STATE_BYTES} bytes")
    return first, state


def _invalid(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(reason, code="invalid")
