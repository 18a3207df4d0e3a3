"""What a node holds of group traffic, and for whom (docs/groups.md "Not losing an item",
docs/security.md Limits).

- Every member device's mailbox has an allowance of group items (``Kind.GROUP`` envelopes:
  count and body bytes) apart from its mailbox quota, by default twice that quota
  (node.toml ``[budgets] group_items_per_device`` / ``group_bytes_per_device``). Group items
  never take room from 1:1 messages, and a group is no reason to refuse them.
- Past the allowance a member node takes a pushed ORDERED item for the devices that have room
  and answers ``group_full`` (core.federation_api.RETRY_LATER): the hub's outbox keeps the item
  and pushes it again at its next expiry tick, when it goes to the devices still waiting; the
  devices that had room are not held back, and nothing else towards this node waits for it.
- One hub holds at most a share of a device's allowance (``HUB_SHARE``: a quarter, count and
  bytes) of the items it pushed here: any pinned peer can make itself the hub of a new group
  naming a device here (trust on first use), and without it one peer could fill the whole
  allowance alone, charged to no one. Past its share the device is full for that hub's items
  only (they wait as above: ``group_full``), while other hubs' items and this node's own groups
  still reach it. Not the hub's relay budget: an offline device holding a hub's items would
  then fill that budget, and every push of the hub, its other groups' and 1:1 envelopes too,
  would be refused ``relay_full`` (docs/groups.md "One hub's share of a device").
- At the hub itself there is no outbox between the ordering and its own member devices: a
  submission whose ORDERED copy (or verdict) a local device has no room for is not ordered now
  (``group_full``: the submitting device, or the submitter's node's outbox, sends it again
  later). The trade-off: while a device of the hub's node keeps its allowance full, the group
  takes no submissions; the allowance holds weeks of a busy group, and the device's items
  expire with the envelope TTL, which frees it.
"""

from __future__ import annotations

from sonet.core import limits
from sonet.federation.records import Quota

__all__ = ["GROUP_ALLOWANCE_FACTOR", "HUB_SHARE", "group_allowance", "hub_share", "GROUP_FULL"]

#: a device's allowance of group items is this many times its mailbox quota unless set
GROUP_ALLOWANCE_FACTOR = 2

#: the outcome (and request error) of a group item a member device has no room for now
GROUP_FULL = "group_full"


def group_allowance(quota: Quota) -> tuple[int, int]:
    """(items, body bytes) of group items one device mailbox may hold."""
    count = quota.group_envelopes if quota.group_envelopes is not None else GROUP_ALLOWANCE_FACTOR * quota.max_envelopes
    size = quota.group_bytes if quota.group_bytes is not None else GROUP_ALLOWANCE_FACTOR * quota.max_bytes
    return count, size


#: one other node's hub may hold at most 1/HUB_SHARE of a device's allowance of group items
HUB_SHARE = 4


def hub_share(quota: Quota) -> tuple[int, int]:
    """(items, body bytes) of one device's group items that one other node's hub may hold: its
    share of the allowance, at least one item of the largest size (an item always fits alone)."""
    count, size = group_allowance(quota)
    return max(1, count // HUB_SHARE), max(min(size, limits.MAX_GROUP_ITEM_BYTES), size // HUB_SHARE)
