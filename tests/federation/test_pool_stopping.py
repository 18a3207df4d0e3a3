"""A link pool whose node is stopping (its nursery closing, e.g. because the node could not
listen) refuses a new dial with a FederationError like any other failed dial, not a
RuntimeError that would turn the node's one-line error into a traceback (newbie11)."""

from __future__ import annotations

import os

import pytest
import trio

from sonet.core.client_api import Ping
from sonet.core.crypto import CryptoPolicy
from sonet.federation.errors import FederationError
from sonet.federation.peers import Peer
from sonet.federation.pool import LinkPool
from sonet.federation.settings import FederationSettings
from tests.node.kit import wall_ms

from .net import BETA, new_key


async def test_a_dial_while_the_pool_stops_is_a_federation_error() -> None:
    async def remember_key(peer: Peer, key: object) -> None:
        pass

    pool = LinkPool(
        name="alpha.example", identity=new_key(), policy=CryptoPolicy(), remember_key=remember_key,
        clock_ms=wall_ms, rng=os.urandom, settings=FederationSettings(),
    )  # fmt: skip
    peer = Peer(name=BETA, url="wss://127.0.0.1:1/federation", fingerprint=new_key().public.fingerprint, via=None, added_at=wall_ms())
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        nursery.cancel_scope.cancel()  # the node stops: the pool's nursery closes
    # what a witness round still under way then asks (the node's other tasks end a moment later)
    with pytest.raises(FederationError) as caught:
        await pool.request(peer, Ping(request=0))
    assert caught.value.code == "unavailable" and "stopping" in str(caught.value)
