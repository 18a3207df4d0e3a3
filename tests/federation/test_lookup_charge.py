"""A device pays for the lookups at other nodes that actually go out to a peer
(federation/lookup_charge.py): a device list the home node has cached, a stored node key, a
lookup refused before anything is sent cost nothing; over its budget nothing is sent."""

from __future__ import annotations

import pytest

from sonet.core.client_api import Devices, FetchDevices, FetchHead, FetchNodeKey, Head, NodeKey
from sonet.federation.errors import FederationError
from sonet.federation.lookup_charge import charging_lookups
from sonet.federation.ratelimit import Rate
from sonet.node.client_limits import ClientLimits
from tests.node.conftest import NodeParams, StartNode
from tests.node.kit import NodeError

from .net import BETA, triangle

#: no token comes back while a test runs
NEVER = 1e-9


async def test_only_lookups_that_go_out_are_charged(start_node: StartNode, monkeypatch: pytest.MonkeyPatch) -> None:
    net = await triangle(start_node)
    federation = net.alpha.node.federation
    assert federation is not None
    charged: list[str] = []
    sent: list[type] = []
    request = federation._pool.request

    async def counting(hop, frame, **kw):  # noqa: ANN001, ANN202
        sent.append(type(frame))
        return await request(hop, frame, **kw)

    monkeypatch.setattr(federation._pool, "request", counting)
    with charging_lookups(charged.append):
        assert isinstance(await federation.remote_devices(net.bob.address), Devices)
        assert isinstance(await federation.remote_devices(net.bob.address), Devices)  # from the cache
        assert isinstance(await federation.remote_head(BETA), Head)
        assert isinstance(await federation.remote_head(BETA), Head)  # heads are not cached: out again
        await federation.node_key(BETA)  # the pinned key is stored: nobody is asked
        with pytest.raises(FederationError):
            await federation.remote_head("nowhere.example")  # not a peer: nothing goes out
    assert charged == [BETA, BETA, BETA]
    assert sent == [FetchDevices, FetchHead, FetchHead]

    def refuse(node: str) -> None:
        raise FederationError("rate_limited", f"over budget for {node}")

    with charging_lookups(refuse), pytest.raises(FederationError) as info:
        await federation.remote_head(BETA)
    assert info.value.code == "rate_limited"
    assert sent == [FetchDevices, FetchHead, FetchHead]  # refused before it was sent
    # outside a device's request (witness rounds, relayed lookups) nothing is charged
    await federation.remote_head(BETA)
    assert charged == [BETA, BETA, BETA]


async def test_a_device_spends_its_lookup_budget_only_on_what_reaches_the_peer(start_node: StartNode, node_params: NodeParams) -> None:
    node_params.client_limits = ClientLimits(lookups=Rate(per_second=NEVER, burst=2))
    net = await triangle(start_node)
    async with net.alpha.raw(net.alice.first) as conn:
        assert isinstance(await conn.request(lambda n: FetchDevices(request=n, account=net.bob.address)), Devices)
        for _ in range(20):  # answered from the home node's cache: free
            assert isinstance(await conn.request(lambda n: FetchDevices(request=n, account=net.bob.address)), Devices)
            assert isinstance(await conn.request(lambda n: FetchNodeKey(request=n, node=BETA)), NodeKey)
        assert isinstance(await conn.request(lambda n: FetchHead(request=n, node=BETA)), Head)  # the second token
        with pytest.raises(NodeError) as info:
            await conn.request(lambda n: FetchHead(request=n, node=BETA))
        assert info.value.code == "rate_limited"
        assert "too many lookups at other nodes from this device" in str(info.value)
        # the cached device list is still free, and the connection goes on
        assert isinstance(await conn.request(lambda n: FetchDevices(request=n, account=net.bob.address)), Devices)
    # another device of the node has its own budget
    async with net.alpha.raw((await net.alpha.enroll("dave")).first) as conn:
        assert isinstance(await conn.request(lambda n: FetchHead(request=n, node=BETA)), Head)
