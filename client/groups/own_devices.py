"""A member's devices follow its account's device list in every group (docs/groups.md, "Devices
of a member"): a newly linked device joins the account's groups by itself, a removed one is
taken out of them.

The list is the account's own verified device list: the one the self-monitoring audit found
signed by the account key (client/monitor.py ``own_device_list``), or, right after ``devices
remove``, the list this device has just signed. A device compares each group it is in with it:

- a leaf of its account whose fingerprint the list no longer names is removed (op
  ``remove_devices``: removing devices of one's own account is allowed for any member);
- a listed device of its account that has no leaf is added with a KeyPackage fetched and
  checked like any other (client/groups/members.py); an admin account then sends the group's
  name and topic again, for the newcomer.

The change becomes the group's own submission (made, redone on top of a newer epoch if another
commit came first, and sent by the engine: client/groups/engine.py). Two devices of the account
may both do it: the hub orders one commit per epoch, and the other device, redoing its change on
top, finds the device already added (or removed) and has nothing left to do.

Nothing is done while the list's version and the set of groups are those of the last pass that
found every group matching the list (kept in the kv, ``groups/own_devices``). A pass that could
not finish (a group busy with another change of this device, a change just sent) is due again
at the next receive; one that found listed devices without KeyPackages (a device that did not
receive yet) is retried after a pause that doubles from ``RETRY_FIRST_MS`` to ``RETRY_MAX_MS``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from sonet.core import canonical, limits
from sonet.core.address import parse_address
from sonet.core.content import Content, encode_content
from sonet.core.crypto import CryptoPolicy
from sonet.core.device_list import DeviceList
from sonet.core.groups.credential import leaf_member
from sonet.core.groups.state import group_extension
from sonet.core.mls.group import Group
from sonet.core.mls.messages import Remove

from ..connection import Connection
from ..monitor import own_device_list
from ..state import DeviceState, Profile
from .members import fetch_key_packages
from .store import Outstanding

__all__ = ["follow_device_list", "RETRY_FIRST_MS", "RETRY_MAX_MS"]

_KEY = "groups/own_devices"
#: pauses before asking again for the KeyPackages of a listed device that had none
RETRY_FIRST_MS = 60 * 1000
RETRY_MAX_MS = 60 * 60 * 1000


def _load(state: DeviceState) -> dict:
    raw = state.get(_KEY)
    return canonical.loads(raw) if raw is not None else {"version": -1, "groups": b"", "due": 0, "pause": 0}


def _groups_digest(state: DeviceState) -> bytes:
    return hashlib.sha256(b"".join(state.group_ids())).digest()


async def follow_device_list(
    conn: Connection, state: DeviceState, profile: Profile, *, policy: CryptoPolicy, now: int, rng: Callable[[int], bytes],
    listed: DeviceList | None = None,
) -> None:
    """Make every group this device is in follow the account's device list (``listed``, else
    the audited one): queue the changes as the groups' own submissions (the caller's engine
    flush sends them). Raises like a lookup (fetching KeyPackages) when the node fails."""
    listed = listed if listed is not None else own_device_list(state, profile)
    if listed is None or profile.identity.public.fingerprint not in listed:
        return  # no audited list yet, or this device is removed itself: nothing to act on
    mark = _load(state)
    digest = _groups_digest(state)
    if (mark["version"], mark["groups"]) == (listed.version, digest) and now < mark["due"]:
        return
    busy = False  # a group had another change of this device on its way: due at the next receive
    unfinished = False  # a change was queued, or a listed device had no KeyPackages: due after a pause
    for record in state.group_records():
        if not record.active:
            continue
        group = Group.from_bytes(record.mls)
        if any(isinstance(p.proposal, Remove) and p.proposal.removed == group.leaf_index for p in group.pending_proposals()):
            continue  # this account is leaving the group (its other devices were taken out first): not re-added
        mine = {c.device: c.fingerprint for _i, leaf in group.members() for c in (leaf_member(leaf),) if c.account == profile.address}
        gone = sorted(d for d, fp in mine.items() if fp not in listed and d != profile.device_id)
        missing = set(listed.devices) - set(mine.values())
        if not gone and not missing:
            continue
        if record.own is not None:
            busy = True  # one change at a time: this one after the one on its way
            continue
        unfinished = True
        if gone:  # first the removal; adding (if also due) at a later pass
            op: dict = {"op": "remove_devices", "account": profile.address, "devices": gone}
        else:
            found = await fetch_key_packages(conn, state, parse_address(profile.address), policy=policy, now=now, skip=set(mine))
            if not found:
                continue
            op = {"op": "add", "key_packages": found}
            if record.name and group_extension(group.context).is_admin(profile.address):
                name = Content.make_group_state(id=rng(limits.CONTENT_ID_LEN), sent_at=now, name=record.name, topic=record.topic)
                op["then"] = {"op": "send", "content": encode_content(name)}  # the newcomer learns the name
        with state.transaction():
            fresh = state.group_record(record.id)
            if fresh is None or fresh.own is not None or fresh.mls != record.mls:
                busy = True  # the group moved meanwhile: next time
                continue
            state.save_group(fresh.but(own=Outstanding(
                ref=b"", origin=rng(16), kind="commit", epoch=group.epoch, message=b"", welcome=b"", after=None, op=op,
                submitted=False, redo=True, redo_epoch=group.epoch,
            )))  # fmt: skip
    pause = min(max(RETRY_FIRST_MS, 2 * mark["pause"]), RETRY_MAX_MS) if unfinished else 0
    if busy:
        due = now
    elif unfinished:
        due = now + pause
    else:
        due = now + RETRY_MAX_MS  # settled: skipped until the list or the groups change (this is a safety net)
    state.put(_KEY, canonical.dumps({"version": listed.version, "groups": digest, "due": due, "pause": pause}))
