"""The home node's cache of remote device lists: fresh for a short while, and still served
(stale, up to a day) while the remote node cannot answer, so sends to it queue instead of
failing; a definite "no" from the remote node is never masked by the cache."""

from __future__ import annotations

import dataclasses

import pytest

from sonet.core.client_api import Devices
from sonet.federation.errors import FederationError
from sonet.federation.service import STALE_DEVICES_MS
from sonet.node.app import now_ms
from tests.node.conftest import StartNode

from .net import BETA, triangle, until


def _failing(code: str):  # noqa: ANN202
    async def request(hop, frame, **_):  # noqa: ANN001, ANN202
        raise FederationError(code, f"simulated {code}")

    return request


async def test_a_stale_list_serves_only_while_the_node_cannot_answer(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    net = await triangle(start_node)
    federation = net.alpha.node.federation
    assert federation is not None
    fresh = await federation.remote_devices(net.bob.address)
    assert isinstance(fresh, Devices)

    def age(ms: int) -> None:  # make the cached entry ``ms`` past its freshness
        federation._devices[net.bob.address] = (now_ms() - ms, fresh)

    age(1000)
    monkeypatch.setattr(federation._pool, "request", _failing("unreachable"))
    assert await federation.remote_devices(net.bob.address) is fresh  # stale but the node is down

    monkeypatch.setattr(federation._pool, "request", _failing("unknown_account"))
    with pytest.raises(FederationError) as info:
        await federation.remote_devices(net.bob.address)
    assert info.value.code == "unknown_account"  # a definite answer is never masked

    age(STALE_DEVICES_MS + 1000)
    monkeypatch.setattr(federation._pool, "request", _failing("unreachable"))
    with pytest.raises(FederationError) as info:
        await federation.remote_devices(net.bob.address)
    assert info.value.code == "unreachable"  # too old to stand in


async def test_a_cosign_forgets_only_the_lists_its_head_can_contradict_or_lacks_for(start_node: StartNode) -> None:
    """Every cosign of a peer's head dropped every cached device list of the peer's accounts, so
    each made the next sends ask again. Now a cosign of head H forgets the lists proven at an
    older head (a leaf H adds may be the account's newer entry: never kept) and those proven at
    H without this node's cosignature (the peer now shows it); a list proven at H with it, or
    at a newer head, is kept."""
    from sonet.core.client_api import SignedHead
    from sonet.core.keydir import decode_head

    from .test_witness import pair
    from .transparency import cosigned_by, federation, latest

    alpha, beta = await pair(start_node)
    bob = await beta.enroll("bob")
    await until(lambda: cosigned_by(beta, alpha, 1), "alpha cosigned beta's head of size 1")
    fed = federation(alpha)
    bob_address = bob.address
    listed = await fed.remote_devices(bob_address)
    proven_at = decode_head(listed.proof.head.head)
    assert proven_at.size == 1 and listed.proof.head.cosignatures  # alpha's cosignature is on it

    fed._forget_devices(BETA, proven_at)  # a cosign of that same head: nothing it can change
    assert fed._devices[bob_address][1] is listed

    uncosigned = dataclasses.replace(listed, proof=dataclasses.replace(listed.proof, head=SignedHead(head=listed.proof.head.head, cosignatures=())))
    fed._devices[bob_address] = (now_ms() + 30_000, uncosigned)
    fed._forget_devices(BETA, proven_at)  # ... but the list without the cosignature goes
    assert bob_address not in fed._devices

    await fed.remote_devices(bob_address)
    await beta.enroll("carol")  # beta's head grows; alpha cosigns size 2 in a round
    await until(lambda: cosigned_by(beta, alpha, 2), "alpha cosigned beta's head of size 2")
    await until(lambda: bob_address not in fed._devices, "bob's list proven at size 1 was forgotten")
    assert (await latest(beta)).size == 2
