"""Where group items go (docs/groups.md): pure decisions, no I/O.

The store (node/store/sqlite_groups.py) runs these inside the transaction that takes a request
or a push, so everything one submission or one pushed item causes is committed together:

- ``submit_item``: a device's ``GroupSubmit`` as the SUBMIT item for the hub (its epoch read
  from the MLS message's cleartext header);
- ``plan``: what a hub's ``HubOutcome`` (core/groups/hub.py) means for this node: the ORDERED
  copy it keeps for its own member devices, the items for other nodes' outboxes (ORDERED
  copies, the HANDOVER), and a VERDICT for a refusal, to this node's device or the origin's;
- ``group_transit`` / ``mailbox_envelope``: an item as an outbox item for another node, and as
  a ``Kind.GROUP`` envelope in one member device's mailbox;
- ``is_commit``: whether an ORDERED item's message is a commit (its member list then replaces
  the node's; an empty one means no member device is left here);
- ``lives_until``: when everything a node keeps of an item goes: the envelope TTL, or a timed
  item's own expiry when sooner (docs/groups.md "Disappearing messages on nodes").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from sonet.core import limits
from sonet.core.client_api import GroupSubmit
from sonet.core.envelope import Kind
from sonet.core.errors import RemoteProtocolError
from sonet.core.federation_api import Transit
from sonet.core.groups.expiry import read_expiry_aad
from sonet.core.groups.hub import HubOutcome
from sonet.core.groups.items import GROUP_REFUSALS, GroupItem, ItemKind
from sonet.core.mls.framing import ContentType, MLSMessage, PrivateMessage, PublicMessage
from sonet.core.wire import encode_struct
from sonet.federation.records import NewEnvelope, OutboundItem
from sonet.federation.transit import encode_transit, item_key

__all__ = ["Plan", "submit_item", "lives_until", "message_header", "is_commit", "verdict_item", "plan", "group_transit", "mailbox_envelope", "mailbox_envelopes"]


def message_header(message: bytes) -> tuple[bytes, int, ContentType]:
    """(group id, epoch, content type) of a PublicMessage or PrivateMessage; RemoteProtocolError
    (one line) for anything else."""
    mls = MLSMessage.from_bytes(message)
    body = mls.body
    if isinstance(body, PublicMessage):
        return body.content.group_id, body.content.epoch, body.content.content_type
    if isinstance(body, PrivateMessage):
        return body.group_id, body.epoch, body.content_type
    raise RemoteProtocolError(f"a group message is a public or private message, not a {mls.wire_format.name.lower()}", code="bad_input")


def is_commit(message: bytes) -> bool:
    try:
        return message_header(message)[2] is ContentType.COMMIT
    except RemoteProtocolError:
        return False  # the hub ordered it, so it decodes; one that does not changes no members


def lives_until(item: GroupItem, *, now: int, ttl_ms: int) -> int:
    """When what this node keeps of ``item`` (mailbox rows, outbox items, dedup records)
    expires: after the envelope TTL, or at the item's own expiry if that is sooner."""
    return min(now + ttl_ms, item.expires) if item.expires else now + ttl_ms


def submit_item(req: GroupSubmit) -> GroupItem:
    """The SUBMIT item for ``req``, a timed application message's expiry read from its
    authenticated data (core/groups/expiry.py); ValueError (one line) if it is malformed or not
    for its group."""
    try:
        group, epoch, _ = message_header(req.message)
        body = MLSMessage.from_bytes(req.message).body
        expires = read_expiry_aad(body.authenticated_data) if isinstance(body, PrivateMessage) else None
    except RemoteProtocolError as exc:
        raise ValueError(f"the group message does not decode: {exc}") from None
    if group != req.group:
        raise ValueError("the group message is for another group")
    item = GroupItem(
        kind=ItemKind.SUBMIT, ref=req.ref, group=req.group, epoch=epoch, seq=0, message=req.message,
        welcome=req.welcome, members=(), outcome="", hub="", expires=expires or 0,
    )
    item.check()
    return item


def verdict_item(submit: GroupItem, *, code: str, epoch: int) -> GroupItem:
    """The VERDICT refusing ``submit`` with ``code`` (a GROUP_REFUSALS code)."""
    if code not in GROUP_REFUSALS:
        raise ValueError(f"not a group refusal: {code!r}")
    return GroupItem(
        kind=ItemKind.VERDICT, ref=submit.ref, group=submit.group, epoch=epoch, seq=0, message=b"",
        welcome=b"", members=(), outcome=code, hub="",
    )


@dataclass(frozen=True)
class Plan:
    """What one hub outcome does: ``local`` the ORDERED copy for this node's own member
    devices, ``remote`` (node, item) for other nodes' outboxes in the order they are queued,
    ``verdict`` a refusal for the submitting device (``verdict_to``: its node)."""

    local: GroupItem | None = None
    remote: tuple[tuple[str, GroupItem], ...] = ()
    verdict: GroupItem | None = None
    verdict_to: str = ""


def plan(outcome: HubOutcome, *, here: str, submit: GroupItem, origin: str) -> Plan:
    """The ``Plan`` of ``outcome`` for ``submit``, ordered at ``here`` for a device of
    ``origin``. The ORDERED copies go before the HANDOVER parts (the new hub's outbox keeps the
    order)."""
    if outcome.code != "ok":
        return Plan(verdict=verdict_item(submit, code=outcome.code, epoch=outcome.epoch), verdict_to=origin)
    local: GroupItem | None = None
    remote: list[tuple[str, GroupItem]] = []
    for node, item in outcome.ordered:
        if node == here:
            local = item
        else:
            remote.append((node, item))
    if outcome.handover is not None:  # the state in parts, in order
        new_hub, parts = outcome.handover
        remote.extend((new_hub, part) for part in parts)
    return Plan(local=local, remote=tuple(remote))


def group_transit(item: GroupItem, *, origin: str, dest: str, now: int, ttl_ms: int) -> OutboundItem:
    """``item`` as an outbox item for node ``dest``; ``origin`` is the node VERDICTs go back to
    (the submitter's home node for a SUBMIT, even one a former hub forwards)."""
    transit = Transit(origin=origin, dest=dest, hops=limits.MAX_HOPS, envelope=None, report=None, group=item)
    return OutboundItem(dest=dest, key=item_key(transit), expires=lives_until(item, now=now, ttl_ms=ttl_ms), data=encode_transit(transit))


def mailbox_envelopes(item: GroupItem, members: Iterable[tuple[str, int]], *, now: int, ttl_ms: int) -> list[NewEnvelope]:
    """``mailbox_envelope`` for each of ``members``, the item encoded (and checked) once: a
    commit of a large group goes to hundreds of mailboxes of a node."""
    members = list(members)
    if not members:
        return []
    first = mailbox_envelope(item, members[0], now=now, ttl_ms=ttl_ms)
    return [first] + [msgspec.structs.replace(first, account=account, device_id=device) for account, device in members[1:]]


def mailbox_envelope(item: GroupItem, member: tuple[str, int], *, now: int, ttl_ms: int) -> NewEnvelope:
    """``item`` for one member device's mailbox: a ``Kind.GROUP`` envelope named by the ref.
    The list of this node's member devices is the node's: a copy that would not fit an
    envelope goes without it (devices read the membership from the commit itself)."""
    account, device = member
    body = encode_struct(item)
    if len(body) > limits.MAX_GROUP_ITEM_BYTES:  # (GroupItem.check bounds an item below it)
        body = encode_struct(dataclasses.replace(item, members=()))
    return NewEnvelope(account=account, device_id=device, id=item.ref, expires=lives_until(item, now=now, ttl_ms=ttl_ms), kind=Kind.GROUP, body=body)
