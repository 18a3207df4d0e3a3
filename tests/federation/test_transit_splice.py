"""federation/transit.py ``spliced_transit``: a device's envelope becomes an outbox item's bytes
without a Transit built, encoded and decoded back. The bytes must be exactly wire.encode_struct's
for every field combination, and what Transit.check refuses must still be refused, in its words."""

from __future__ import annotations

import dataclasses
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonet.core import limits
from sonet.core.access import ACCESS_TOKEN_LEN
from sonet.core.address import parse_address
from sonet.core.envelope import ENVELOPE_VERSION, Envelope, Kind
from sonet.core.errors import LocalProtocolError
from sonet.core.federation_api import Transit
from sonet.core.wire import encode_struct
from sonet.federation.transit import envelope_item, spliced_transit

NOW = 1_700_000_000_000
TTL = 30 * 24 * 3600 * 1000

#: what varies the bytes is their length (all ASCII): no regex strategy (slow to draw)
_label = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=63)
#: node names short (fixstr) and long (str8, up to 253 characters)
node_names = st.lists(_label, min_size=1, max_size=6).map(".".join).filter(lambda name: len(name) <= limits.MAX_NODE_NAME_LEN)
users = st.text(alphabet=string.ascii_lowercase + string.digits + "._", min_size=1, max_size=64).map(lambda u: f"u{u[1:-1]}0")  # (starts and ends alphanumeric)
#: bodies around every msgpack bin header size (bin8, bin16, bin32) and the envelope body cap
body_sizes = st.sampled_from([0, 1, 31, 32, 255, 256, 65_535, 65_536, limits.MAX_ENVELOPE_BODY]) | st.integers(0, 300)
ints = st.sampled_from([1, 127, 128, 255, 256, 65_535, 65_536, 2**31 - 1, 2**32, 2**63 - 1])


@st.composite
def envelopes(draw: st.DrawFn, node: str) -> Envelope:
    return Envelope(
        v=ENVELOPE_VERSION,
        id=draw(st.binary(min_size=16, max_size=16)),
        to=f"{draw(users)}@{node}",
        device=draw(ints.filter(lambda d: d < 2**31) | st.integers(1, 2**31 - 1)),
        expires=draw(ints | st.integers(1, 2**63 - 1)),
        kind=Kind.SEALED,
        body=b"\x5a" * draw(body_sizes),  # (its header size is what varies; replayable)
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), origin=node_names, dest=node_names, hops=st.integers(0, limits.MAX_HOPS), access=st.sampled_from([b""]) | st.binary(min_size=ACCESS_TOKEN_LEN, max_size=ACCESS_TOKEN_LEN))
def test_spliced_bytes_are_the_encoders_for_every_field_combination(data: st.DataObject, origin: str, dest: str, hops: int, access: bytes) -> None:
    env = data.draw(envelopes(dest))
    item = Transit(origin=origin, dest=dest, hops=hops, envelope=env, report=None, access=access)
    assert spliced_transit(env, origin=origin, dest=dest, hops=hops, access=access) == encode_struct(item)


def envelope(to: str = "bob@beta.example", **fields: object) -> Envelope:
    env = Envelope(v=ENVELOPE_VERSION, id=os.urandom(16), to=to, device=2, expires=NOW + 60_000, kind=Kind.SEALED, body=b"sealed")
    return dataclasses.replace(env, **fields)  # type: ignore[arg-type]


REFUSED = [
    ("ephemeral kind", envelope(kind=Kind.EPHEMERAL), {}),
    ("group kind", envelope(kind=Kind.GROUP), {}),
    ("short token", envelope(), {"access": b"t" * (ACCESS_TOKEN_LEN - 1)}),
    ("long token", envelope(), {"access": b"t" * (ACCESS_TOKEN_LEN + 1)}),
    ("address on another node", envelope("bob@gamma.example"), {}),
    ("bad origin", envelope(), {"origin": "not a node name!"}),
    ("bad destination", envelope("bob@beta.example"), {"dest": "beta..example"}),
    ("too many hops", envelope(), {"hops": limits.MAX_HOPS + 1}),
    ("negative hops", envelope(), {"hops": -1}),
]


@pytest.mark.parametrize("why, env, fields", REFUSED, ids=[r[0] for r in REFUSED])
def test_what_transit_check_refuses_the_splice_refuses_in_the_same_words(why: str, env: Envelope, fields: dict) -> None:
    make = {"origin": "alpha.example", "dest": "beta.example", "hops": limits.MAX_HOPS, "access": b"", **fields}
    with pytest.raises(LocalProtocolError) as built:
        encode_struct(Transit(envelope=env, report=None, **make))
    with pytest.raises(LocalProtocolError) as spliced:
        spliced_transit(env, **make)
    assert str(spliced.value) == str(built.value) and "\n" not in str(spliced.value)


@pytest.mark.parametrize("token", ["", "t" * ACCESS_TOKEN_LEN, None])
def test_a_token_that_is_not_bytes_is_refused(token: object) -> None:
    with pytest.raises(LocalProtocolError, match="^invalid Transit.access: "):
        encode_struct(Transit(origin="alpha.example", dest="beta.example", hops=1, envelope=envelope(), report=None, access=token))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="^invalid Transit.access: not bytes"):
        spliced_transit(envelope(), origin="alpha.example", dest="beta.example", hops=1, access=token)  # type: ignore[arg-type]


def test_only_a_decoded_envelope_is_spliced() -> None:
    class Other(Envelope):  # (not what a decoder makes)
        pass

    fake = Other(v=ENVELOPE_VERSION, id=os.urandom(16), to="bob@beta.example", device=2, expires=NOW + 1, kind=Kind.SEALED, body=b"x")
    with pytest.raises(LocalProtocolError, match="not a decoded envelope"):
        spliced_transit(fake, origin="alpha.example", dest="beta.example", hops=1, access=b"")


def test_an_item_over_the_frame_cap_is_refused() -> None:
    # a device's envelope never is (the body cap is far below); an item must fit a push frame
    huge = envelope(body=b"x" * limits.MAX_FRAME_BYTES)
    with pytest.raises(LocalProtocolError, match="MAX_FRAME_BYTES"):
        spliced_transit(huge, origin="alpha.example", dest="beta.example", hops=1, access=b"")


@pytest.mark.parametrize("to", ["bob@beta.example", "  BOB@Beta.Example ", "b" * limits.MAX_ACCOUNT_LEN + "@beta.example"])
@pytest.mark.parametrize("token", [b"", bytes(range(ACCESS_TOKEN_LEN))])
def test_a_checked_item_is_the_item_built_in_full(to: str, token: bytes) -> None:
    env = envelope(to, expires=2**63 - 1)  # normalised and capped on the way
    make = dict(origin="alpha.example", sender_account="alice@alpha.example", sender_device=1, now=NOW, ttl_ms=TTL, access=token)
    spliced, built = envelope_item(env, checked=True, **make), envelope_item(env, **make)  # type: ignore[arg-type]
    assert spliced == built
    assert spliced.dest == parse_address(to).node and spliced.expires == NOW + TTL
