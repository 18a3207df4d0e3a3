"""Review of the intake splice (round 7, federation/transit.py spliced_transit; federation/records.py
Tracking and OutboundItem as msgspec structs): at every msgpack size boundary an input the
decoder accepts can reach - an address long enough for a str16 header (the property test's
random names rarely get there), node names either side of fixstr/str8, bodies either side of
each bin header, the largest ints - the spliced bytes are the full encoder's, they decode to
the Transit built in full, and envelope_item with and without the splice makes equal items.
The records still behave as the frozen dataclasses they were where anything could rely on it:
equal by value, hashable, immutable, picklable."""

from __future__ import annotations

import itertools
import os
import pickle

import msgspec
import pytest

from sonet.core import limits
from sonet.core.access import ACCESS_TOKEN_LEN
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.federation_api import Transit
from sonet.core.wire import decode_struct, encode_struct
from sonet.federation.records import OutboundItem, Tracking
from sonet.federation.transit import envelope_item, spliced_transit

NOW = 1_700_000_000_000
TTL = 30 * 24 * 3600 * 1000


def node_name(length: int) -> str:
    """A valid node name of exactly ``length`` characters (labels of at most 63)."""
    labels, left = [], length
    while left > 63:
        labels.append("n" * 62)
        left -= 63
    labels.append("m" * left)
    name = ".".join(labels)
    assert len(name) == length
    return name


LONGEST_USER = "u" * limits.MAX_ACCOUNT_LEN
#: 31/32: fixstr/str8; 253: the longest name
NODE_LENGTHS = [1, 31, 32, limits.MAX_NODE_NAME_LEN]
#: each side of every bin header size, and the body cap
BODY_SIZES = [0, 255, 256, 65_535, 65_536, limits.MAX_ENVELOPE_BODY]


def envelope(to: str, body: int, *, device: int = 2**31 - 1, expires: int = 2**63 - 1) -> Envelope:
    return Envelope(v=ENVELOPE_VERSION, id=os.urandom(16), to=to, device=device, expires=expires, kind=Kind.SEALED, body=b"\x5a" * body)


@pytest.mark.parametrize("origin_len, dest_len", list(itertools.product(NODE_LENGTHS, NODE_LENGTHS)))
@pytest.mark.parametrize("access", [b"", bytes(range(ACCESS_TOKEN_LEN))])
def test_names_at_every_header_size_splice_to_the_encoders_bytes(origin_len: int, dest_len: int, access: bytes) -> None:
    origin, dest = node_name(origin_len), node_name(dest_len)
    to = f"{LONGEST_USER}@{dest}"  # up to 318 characters: a str16 header
    for hops in (0, limits.MAX_HOPS):
        env = envelope(to, 300)
        item = Transit(origin=origin, dest=dest, hops=hops, envelope=env, report=None, access=access)
        spliced = spliced_transit(env, origin=origin, dest=dest, hops=hops, access=access)
        assert spliced == encode_struct(item)
        assert decode_struct(Transit, spliced) == item


@pytest.mark.parametrize("body", BODY_SIZES)
@pytest.mark.parametrize("device, expires", [(1, 1), (127, 128), (2**31 - 1, 2**63 - 1), (65_536, 2**32)])
def test_bodies_and_ints_at_every_header_size_splice_to_the_encoders_bytes(body: int, device: int, expires: int) -> None:
    dest = node_name(limits.MAX_NODE_NAME_LEN)
    env = envelope(f"{LONGEST_USER}@{dest}", body, device=device, expires=expires)
    item = Transit(origin="alpha.example", dest=dest, hops=limits.MAX_HOPS, envelope=env, report=None)
    spliced = spliced_transit(env, origin="alpha.example", dest=dest, hops=limits.MAX_HOPS, access=b"")
    assert spliced == encode_struct(item)
    assert decode_struct(Transit, spliced) == item


@pytest.mark.parametrize("to", [f"{LONGEST_USER}@{node_name(limits.MAX_NODE_NAME_LEN)}", f"{LONGEST_USER.upper()}@{node_name(limits.MAX_NODE_NAME_LEN).upper()}"])
def test_the_longest_address_makes_the_same_item_spliced_or_built(to: str) -> None:
    env = envelope(to, limits.MAX_ENVELOPE_BODY)
    make = dict(origin="alpha.example", sender_account="alice@alpha.example", sender_device=1, now=NOW, ttl_ms=TTL, access=b"")
    spliced, built = envelope_item(env, checked=True, **make), envelope_item(env, **make)  # type: ignore[arg-type]
    assert spliced == built
    sent = decode_struct(Transit, spliced.data).envelope
    assert sent is not None and (sent.to, sent.expires, sent.id, sent.body) == (to.lower(), NOW + TTL, env.id, env.body)


def test_the_records_are_values_as_the_dataclasses_were() -> None:
    def item() -> OutboundItem:
        tracking = Tracking(sender_account="alice@alpha.example", sender_device=1, id=b"i" * 16, account="bob@beta.example", device=2)
        return OutboundItem(dest="beta.example", key=b"k", expires=NOW, data=b"d", tracking=tracking)

    first, second = item(), item()
    assert first == second and hash(first) == hash(second) and len({first, second}) == 1
    assert first != msgspec.structs.replace(first, expires=NOW + 1)
    assert pickle.loads(pickle.dumps(first)) == first
    with pytest.raises(AttributeError):
        first.expires = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        OutboundItem("beta.example", b"k", NOW, b"d", None)  # type: ignore[misc]  # keywords only, as before
