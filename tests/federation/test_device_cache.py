"""The home node's cache of remote device lists: fresh for a short while, and still served
(stale, up to a day) while the remote node cannot answer, so sends to it queue instead of
failing; a definite "no" from the remote node is never masked by the cache."""

from __future__ import annotations

import pytest

from sonet.core.client_api import Devices
from sonet.federation.errors import FederationError
from sonet.federation.service import STALE_DEVICES_MS
from sonet.node.app import now_ms
from tests.node.conftest import StartNode

from .net import triangle


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
