"""federation/transit.py: outbox items as bytes, their keys, and the items nodes queue (pure).

Malformed or tampered bytes are refused with one clear RemoteProtocolError; an item a peer
would refuse cannot be encoded (LocalProtocolError)."""

from __future__ import annotations

import dataclasses
import os

import msgpack
import pytest

from sonet.core import limits
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.errors import LocalProtocolError, RemoteProtocolError
from sonet.core.federation_api import Report, Transit
from sonet.federation.records import Tracking
from sonet.federation.transit import (
    REPORT_TTL_MS,
    decode_transit,
    encode_transit,
    envelope_item,
    item_key,
    read_queued,
    relayed_item,
    report_item,
)

NOW = 1_700_000_000_000
TTL = 30 * 24 * 3600 * 1000


def envelope(to: str = "Bob@Beta.example", device: int = 2, *, expires: int = NOW + 60_000, kind: int = Kind.SEALED) -> Envelope:
    return Envelope(v=ENVELOPE_VERSION, id=os.urandom(16), to=to, device=device, expires=expires, kind=kind, body=b"sealed")


def item_for(env: Envelope, **kw):  # noqa: ANN201
    return envelope_item(env, origin="alpha.example", sender_account="alice@alpha.example", sender_device=1, now=NOW, ttl_ms=TTL, **kw)


def test_a_devices_envelope_becomes_a_tracked_item_for_its_node() -> None:
    env = envelope()
    item = item_for(env)
    transit = decode_transit(item.data)
    assert item.dest == transit.dest == "beta.example"
    assert transit.origin == "alpha.example" and transit.hops == limits.MAX_HOPS and transit.report is None
    assert transit.envelope == dataclasses.replace(env, to="bob@beta.example")  # normalised address
    assert item.expires == env.expires
    assert item.tracking == Tracking(sender_account="alice@alpha.example", sender_device=1, id=env.id, account="bob@beta.example", device=2)
    assert item.key == item_key(transit)


def test_the_expiry_is_capped_by_the_nodes_envelope_ttl() -> None:
    item = item_for(envelope(expires=NOW + 10 * TTL))
    assert item.expires == NOW + TTL == decode_transit(item.data).envelope.expires  # type: ignore[union-attr]


def test_an_ephemeral_envelope_cannot_travel_between_nodes() -> None:
    with pytest.raises(LocalProtocolError, match="sealed"):
        item_for(envelope(kind=Kind.EPHEMERAL))


def test_an_envelope_from_a_decoded_batch_makes_the_same_item_checked_once() -> None:
    env = envelope()
    plain, checked = item_for(env), item_for(env, checked=True)
    assert checked == plain  # the spliced bytes are the encoder's (tests/federation/test_transit_splice.py)
    # the item's own check still runs
    with pytest.raises(LocalProtocolError, match="sealed"):
        item_for(envelope(kind=Kind.EPHEMERAL), checked=True)
    with pytest.raises(LocalProtocolError, match="access token"):
        item_for(env, checked=True, access=b"short")
    # the envelope's types, caps and check() are the decoder's, not run again: checked=True is
    # only for an envelope out of a decoded frame. Without it they are checked in full.
    with pytest.raises(LocalProtocolError, match="envelope.body"):
        item_for(dataclasses.replace(env, body="not bytes"))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="envelope.body"):
        item_for(dataclasses.replace(env, body=b"x" * (limits.MAX_BIN_LEN + 1)))
    with pytest.raises(LocalProtocolError, match="16 bytes"):
        item_for(dataclasses.replace(env, id=b"short"))
    # what went wrong anyway is refused, in one line, where the outbox reads its item back
    wrong = item_for(dataclasses.replace(env, body="not bytes"), checked=True)  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError, match="envelope.body") as info:
        read_queued(wrong.data)
    assert "\n" not in str(info.value)


def test_a_queued_item_reads_back_as_it_was_made_and_damaged_bytes_are_refused() -> None:
    item = item_for(envelope())
    assert read_queued(item.data) == decode_transit(item.data)
    for damaged in (item.data[:-1], item.data + b"\x00", msgpack.packb(_wire(GOOD)[:4]), b"\xc1"):
        with pytest.raises(RemoteProtocolError) as info:
            read_queued(damaged)
        assert "\n" not in str(info.value)


def test_keys_tell_items_apart_and_survive_relaying() -> None:
    env = envelope()
    item = decode_transit(item_for(env).data)
    other_device = decode_transit(item_for(dataclasses.replace(env, device=3)).data)
    other_account = decode_transit(item_for(dataclasses.replace(env, to="carol@beta.example")).data)
    same_differently_spelled = decode_transit(item_for(dataclasses.replace(env, to="BOB@beta.example")).data)
    report = decode_transit(report_item(item, outcome="ok", reporter="beta.example", now=NOW).data)
    keys = {item_key(t) for t in (item, other_device, other_account, report)}
    assert len(keys) == 4
    assert item_key(same_differently_spelled) == item_key(item)
    relayed = relayed_item(item, now=NOW, ttl_ms=TTL)
    assert relayed.key == item_key(item) and decode_transit(relayed.data).hops == item.hops - 1


def test_a_relayed_item_keeps_everything_but_one_hop() -> None:
    item = decode_transit(item_for(envelope()).data)
    relayed = relayed_item(item, now=NOW, ttl_ms=TTL)
    assert relayed.dest == item.dest and relayed.tracking is None and relayed.expires == item.envelope.expires  # type: ignore[union-attr]
    assert decode_transit(relayed.data) == dataclasses.replace(item, hops=item.hops - 1)


def test_a_report_goes_back_to_the_origin() -> None:
    item = decode_transit(item_for(envelope()).data)
    report = report_item(item, outcome="unknown_device", reporter="beta.example", now=NOW)
    transit = decode_transit(report.data)
    assert report.dest == transit.dest == "alpha.example" and transit.origin == "beta.example"
    assert transit.envelope is None and report.tracking is None and report.expires == NOW + REPORT_TTL_MS
    assert transit.report == Report(id=item.envelope.id, account="bob@beta.example", device=2, outcome="unknown_device", at=NOW)  # type: ignore[union-attr]


def test_a_report_with_an_unknown_outcome_cannot_be_made() -> None:
    item = decode_transit(item_for(envelope()).data)
    with pytest.raises(LocalProtocolError, match="outcome"):
        report_item(item, outcome="exploded", reporter="beta.example", now=NOW)


def _wire(item: Transit) -> list:
    return msgpack.unpackb(encode_transit(item))


GOOD = decode_transit(item_for(envelope()).data)


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "empty"),
        (b"\x93\x01\x02", "truncated"),
        (encode_transit(GOOD)[:-1], "cut short"),
        (encode_transit(GOOD) + b"\x00", "trailing byte"),
        (msgpack.packb({"origin": "alpha.example"}), "a map"),
        (msgpack.packb(_wire(GOOD)[:4]), "a field missing"),
        (msgpack.packb([*_wire(GOOD)[:3], None, None]), "neither envelope nor report"),
        (msgpack.packb([*_wire(GOOD)[:4], [b"\x00" * 16, "bob@beta.example", 2, "ok", NOW]]), "both envelope and report"),
        (msgpack.packb([_wire(GOOD)[0], _wire(GOOD)[1], limits.MAX_HOPS + 1, *_wire(GOOD)[3:]]), "too many hops"),
        (msgpack.packb([_wire(GOOD)[0], "gamma.example", *_wire(GOOD)[2:]]), "envelope for another node"),
        (msgpack.packb([*_wire(GOOD)[:3], [*_wire(GOOD)[3][:5], int(Kind.EPHEMERAL), b"x"], None]), "ephemeral envelope"),
        (msgpack.packb(["not a node name!", *_wire(GOOD)[1:]]), "bad origin"),
        (b"\xd4\x01\x00", "an ext type"),
        # a report time past 2**63 would poison the origin's store and block the relay's queue
        (msgpack.packb(["beta.example", "alpha.example", 1, None, [b"\x00" * 16, "bob@beta.example", 2, "ok", 2**64 - 1]]), "report time out of range"),
        (msgpack.packb(["beta.example", "alpha.example", 1, None, [b"\x00" * 16, "bob@beta.example", 2, "ok", -1]]), "negative report time"),
    ],
    ids=lambda value: value if isinstance(value, str) else "data",  # GOOD is random: ids must not show it (pytest-xdist)
)
def test_malformed_items_are_refused_with_a_clear_error(data: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_transit(data)
    assert "\n" not in str(info.value)


def test_every_flipped_byte_decodes_to_a_valid_item_or_is_refused() -> None:
    data = encode_transit(GOOD)
    for i in range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x41
        try:
            item = decode_transit(bytes(tampered))
        except RemoteProtocolError:
            continue
        assert isinstance(item, Transit)  # e.g. a changed body byte: still a well-formed item
