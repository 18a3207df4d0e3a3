"""Outbox items as bytes (pure): a ``core.federation_api.Transit`` in ``OutboundItem.data``,
the deduplication key of an item, and the items this node queues (a device's envelope for
another node, an item it relays, a report back to an envelope's origin)."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import msgspec

from sonet.core import limits
from sonet.core.access import ACCESS_TOKEN_LEN
from sonet.core.address import parse_address, validate_node_name
from sonet.core.envelope import Envelope, Kind
from sonet.core.errors import LocalProtocolError, ProtocolError
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
    "spliced_transit",
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
    (a SendBatch: its types, caps and check() passed), so the item's bytes are spliced
    (:func:`spliced_transit`) instead of a Transit built, encoded and decoded back; without it
    the Transit is encoded and checked in full. LocalProtocolError if the envelope cannot
    travel between nodes."""
    address = parse_address(env.to, remote=True)
    to, expires = str(address), min(env.expires, now + ttl_ms)
    if (to, expires) != (env.to, env.expires):  # (a copy per item costs on the hot path)
        env = msgspec.structs.replace(env, to=to, expires=expires)  # type: ignore[type-var]  # (a tenth of dataclasses.replace)
    if checked:
        data = spliced_transit(env, origin=origin, dest=address.node, hops=limits.MAX_HOPS, access=access)
    else:
        item = Transit(origin=origin, dest=address.node, hops=limits.MAX_HOPS, envelope=env, report=None, access=access)
        data = encode_struct(item)
    tracking = Tracking(sender_account=sender_account, sender_device=sender_device, id=env.id, account=to, device=env.device)
    key = _envelope_key(env.id, env.device, to)  # item_key(item), without parsing the address again
    return OutboundItem(dest=address.node, key=key, expires=expires, data=data, tracking=tracking)


# The Transit array's fields in wire order: spliced_transit writes them so (its test proves the
# bytes equal wire.encode_struct's for every field combination).
if Transit.__struct_fields__ != ("origin", "dest", "hops", "envelope", "report", "access", "group"):
    raise TypeError("Transit's fields changed: federation/transit.py spliced_transit writes the old ones")

_NIL = b"\xc0"  # msgpack nil: the report and group of an envelope item
_NO_ACCESS = _NIL + msgspec.msgpack.encode(b"") + _NIL


def spliced_transit(env: Envelope, *, origin: str, dest: str, hops: int, access: bytes) -> bytes:
    """The bytes ``wire.encode_struct`` makes of ``Transit(origin, dest, hops, envelope=env,
    access=access)``, without building, encoding and decoding back a Transit: the array's head
    (checked and encoded once per origin, destination and hops), the envelope's own encoding,
    and the tail. ``env`` came out of a decoded frame (its types, caps and check() passed); the
    rest of Transit.check is checked here, in its words. LocalProtocolError if the item is not
    one a peer would accept."""
    if type(env) is not Envelope:  # only a decoded envelope: its fields' types are not checked again
        raise LocalProtocolError(f"not a decoded envelope: {type(env).__name__}")
    if type(access) is not bytes:
        raise LocalProtocolError(f"invalid Transit.access: not bytes but {type(access).__name__}")
    # Transit.check's rules, in its order (where several fail, the same one is named)
    if not access:
        tail = _NO_ACCESS
    elif len(access) == ACCESS_TOKEN_LEN:
        tail = _NIL + msgspec.msgpack.encode(access) + _NIL
    else:
        raise LocalProtocolError(f"invalid Transit: an access token is {ACCESS_TOKEN_LEN} bytes, and only with an envelope")
    head = _transit_head(origin, dest, hops)
    try:
        node = parse_address(env.to, remote=True).node  # (cached: envelope_item parsed it)
    except ProtocolError as exc:
        raise LocalProtocolError(f"invalid Transit: {exc}") from None
    if node != dest:
        raise LocalProtocolError("invalid Transit: envelope address is not on the item's destination node")
    if env.kind != Kind.SEALED:
        raise LocalProtocolError("invalid Transit: only stored (sealed) envelopes travel between nodes")
    data = b"".join((head, msgspec.msgpack.encode(env), tail))
    if len(data) > limits.MAX_FRAME_BYTES:
        raise LocalProtocolError("Transit exceeds MAX_FRAME_BYTES")
    return data


@lru_cache(maxsize=1024, typed=True)  # a node's items go to a few destinations, always from the same origin
def _transit_head(origin: str, dest: str, hops: int) -> bytes:
    """An envelope Transit's bytes up to its envelope (array header, origin, dest, hops), with
    Transit.check's checks of them (an exception is not cached: checked again next time)."""
    if type(hops) is not int or not 0 <= hops <= limits.MAX_HOPS:
        raise LocalProtocolError("invalid Transit: hop count out of range")
    try:
        validate_node_name(origin, remote=True)
        validate_node_name(dest, remote=True)
    except ProtocolError as exc:
        raise LocalProtocolError(f"invalid Transit: {exc}") from None
    return b"\x97" + msgspec.msgpack.encode(origin) + msgspec.msgpack.encode(dest) + msgspec.msgpack.encode(hops)


def relayed_item(item: Transit, *, now: int, ttl_ms: int, charged: str | None = None) -> OutboundItem:
    """``item`` (hops > 0) queued by a relay for its next hop, with one hop fewer left, held on
    behalf of ``charged`` (its relay budget; None: the item's origin)."""
    if item.hops <= 0:  # the caller refuses it as "hop_limit" first
        raise LocalProtocolError("a transit item without hops left cannot be relayed")
    onward = dataclasses.replace(item, hops=item.hops - 1)
    return OutboundItem(
        dest=item.dest,
        key=item_key(item),
        expires=item_expires(item, now=now, ttl_ms=ttl_ms),
        data=encode_transit(onward),
        origin=item.origin if charged is None else charged,  # it counts towards that node's relay budget
    )


def report_item(about: Transit, *, outcome: str, reporter: str, now: int) -> OutboundItem:
    """A report to the origin of envelope item ``about``: what became of it (an outcome)."""
    env = about.envelope
    if env is None:  # a report about a report goes nowhere
        raise LocalProtocolError("only an envelope item is reported on")
    report = Report(id=env.id, account=env.to, device=env.device, outcome=outcome, at=now)
    item = Transit(origin=reporter, dest=about.origin, hops=limits.MAX_HOPS, envelope=None, report=report)
    return OutboundItem(dest=item.dest, key=item_key(item), expires=now + REPORT_TTL_MS, data=encode_transit(item))
