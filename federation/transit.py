"""Outbox items as bytes (pure): a ``core.federation_api.Transit`` in ``OutboundItem.data``,
the deduplication key of an item, and the items this node queues (a device's envelope for
another node, an item it relays, a report back to an envelope's origin)."""

from __future__ import annotations

import dataclasses

from sonet.core import limits
from sonet.core.address import parse_address
from sonet.core.envelope import Envelope
from sonet.core.errors import LocalProtocolError
from sonet.core.federation_api import Report, Transit
from sonet.core.wire import decode_stored, decode_struct, encode_struct

from .records import OutboundItem, Tracking

__all__ = [
    "REPORT_TTL_MS",
    "encode_transit",
    "decode_transit",
    "read_queued",
    "item_key",
    "item_expires",
    "envelope_item",
    "relayed_item",
    "report_item",
]

#: how long a report may travel back to the origin: as long as the origin keeps asking about
#: the envelope (its delivery rows outlive the envelope by a grace period of this order)
REPORT_TTL_MS = 7 * 24 * 3600 * 1000


def encode_transit(item: Transit) -> bytes:
    """LocalProtocolError if the item is not one a peer would accept."""
    return encode_struct(item)


def decode_transit(data: bytes) -> Transit:
    """RemoteProtocolError (one line) if ``data`` is not a valid encoded Transit."""
    return decode_struct(Transit, data)


def read_queued(data: bytes) -> Transit:
    """An outbox item this node encoded (``OutboundItem.data``) read back to push it: typed and
    capped, its check()s not run again (they passed when it was queued). RemoteProtocolError
    (one line) if the bytes do not decode (a damaged database)."""
    return decode_stored(Transit, data)


def item_key(item: Transit) -> bytes:
    """Unique per destination: an envelope by (id, device, account), a report about one by the
    same with another prefix, a group item by (kind, group, ref, seq), so a retransmitted item
    is recognised wherever it arrives."""
    if item.envelope is not None:
        env = item.envelope
        return _envelope_key(env.id, env.device, str(parse_address(env.to, remote=True)))
    if item.group is not None:  # a submission by its ref, an ordered copy by its position
        g = item.group
        return b"g" + g.kind.to_bytes(1, "big") + g.group + g.ref + g.seq.to_bytes(8, "big")
    report = item.report
    if report is None:  # Transit.check refuses such an item; one built here is a bug
        raise LocalProtocolError("a transit item carries an envelope or a report")
    return b"r" + report.id + report.device.to_bytes(4, "big") + report.account.encode()


def _envelope_key(msg_id: bytes, device: int, account: str) -> bytes:
    """``item_key`` of an envelope item; ``account`` normalised."""
    return b"e" + msg_id + device.to_bytes(4, "big") + account.encode()


def item_expires(item: Transit, *, now: int, ttl_ms: int) -> int:
    """When a node holding ``item`` drops it: an envelope's own expiry, capped by this node's
    envelope TTL; a group item this node's envelope TTL from now, or a timed one's own expiry
    when sooner (docs/groups.md "Disappearing messages on nodes"); a report ``REPORT_TTL_MS``
    from now."""
    if item.envelope is not None:
        return min(item.envelope.expires, now + ttl_ms)
    if item.group is not None:
        return min(item.group.expires, now + ttl_ms) if item.group.expires else now + ttl_ms
    return now + REPORT_TTL_MS


def envelope_item(
    env: Envelope,
    *,
    origin: str,
    sender_account: str,
    sender_device: int,
    now: int,
    ttl_ms: int,
    access: bytes = b"",
    checked: bool = False,
) -> OutboundItem:
    """The item for a (sealed) envelope a device of ``origin`` sends to another node, tracked
    for the sending device; ``access`` is the recipient's access token the device gave (core/
    access.py), checked by the destination. ``checked``: ``env`` came out of a decoded frame
    (a SendBatch), so its own check() is not run again (the item's is, and the types and caps
    of all of it: wire.encode_struct ``nested_checked``). LocalProtocolError if the envelope
    cannot travel between nodes."""
    address = parse_address(env.to, remote=True)
    to, expires = str(address), min(env.expires, now + ttl_ms)
    if (to, expires) != (env.to, env.expires):  # (a copy per item costs on the hot path)
        env = dataclasses.replace(env, to=to, expires=expires)
    item = Transit(origin=origin, dest=address.node, hops=limits.MAX_HOPS, envelope=env, report=None, access=access)
    tracking = Tracking(
        sender_account=sender_account, sender_device=sender_device, id=env.id, account=env.to, device=env.device
    )
    data = encode_struct(item, nested_checked=checked)
    key = _envelope_key(env.id, env.device, to)  # item_key(item), without parsing the address again
    return OutboundItem(dest=item.dest, key=key, expires=env.expires, data=data, tracking=tracking)


def relayed_item(item: Transit, *, now: int, ttl_ms: int) -> OutboundItem:
    """``item`` (hops > 0) queued by a relay for its next hop, with one hop fewer left."""
    if item.hops <= 0:  # the caller refuses it as "hop_limit" first
        raise LocalProtocolError("a transit item without hops left cannot be relayed")
    onward = dataclasses.replace(item, hops=item.hops - 1)
    return OutboundItem(
        dest=item.dest,
        key=item_key(item),
        expires=item_expires(item, now=now, ttl_ms=ttl_ms),
        data=encode_transit(onward),
        origin=item.origin,  # held on the origin's behalf: it counts towards its relay budget
    )


def report_item(about: Transit, *, outcome: str, reporter: str, now: int) -> OutboundItem:
    """A report to the origin of envelope item ``about``: what became of it (an outcome)."""
    env = about.envelope
    if env is None:  # a report about a report goes nowhere
        raise LocalProtocolError("only an envelope item is reported on")
    report = Report(id=env.id, account=env.to, device=env.device, outcome=outcome, at=now)
    item = Transit(origin=reporter, dest=about.origin, hops=limits.MAX_HOPS, envelope=None, report=report)
    return OutboundItem(dest=item.dest, key=item_key(item), expires=now + REPORT_TTL_MS, data=encode_transit(item))
