"""Attack round 9: the cap on every request was per connection only (500 a second). One
registered device on its eight connections, or one address's eight connections without an
account (a stranger's), sent ~6,000 Pings a second to a real node and took a whole core. The
same rate now holds per device key over all its connections, and per source address over the
connections without an account (node/client_limits.py)."""

from __future__ import annotations

from sonet.core.client_api import Ping
from sonet.node.client_limits import DEVICE_REQUESTS, UNREGISTERED_REQUESTS_PER_ADDRESS, ClientLimits

from .test_client_limits import Clock, Conn, Ctx, refused


def ping() -> Ping:
    return Ping(request=1)


async def test_a_devices_connections_share_its_request_rate() -> None:
    clock = Clock()
    limits = ClientLimits()
    ctx = Ctx(clock)
    first, second = Conn(ctx, "dev-mallory"), Conn(ctx, "dev-mallory")
    for _ in range(int(DEVICE_REQUESTS.burst)):
        await limits.check(first, ping())
    assert await refused(limits, second, ping()) == "too many requests from this device; try again in a moment"
    await limits.check(Conn(ctx, "dev-alice", source="192.0.2.1"), ping())  # another device, same address
    clock.ms += 1000
    for _ in range(int(DEVICE_REQUESTS.per_second)):
        await limits.check(second, ping())
    await refused(limits, first, ping())


async def test_connections_without_an_account_share_their_address_rate() -> None:
    clock = Clock()
    limits = ClientLimits()
    ctx = Ctx(clock)
    burst = int(UNREGISTERED_REQUESTS_PER_ADDRESS.burst)
    strangers = [Conn(ctx, f"stranger-{i}", registered=False, source="198.51.100.7") for i in range(8)]
    for i in range(burst):  # a fresh key for each connection does not help
        await limits.check(strangers[i % 8], ping())
    assert await refused(limits, Conn(ctx, "stranger-new", registered=False, source="198.51.100.7"), ping()) == (
        "too many requests from this address without an account; try again in a moment"
    )
    # registered devices behind that address, and strangers elsewhere, are not held by it
    await limits.check(Conn(ctx, "dev-bob", source="198.51.100.7"), ping())
    await limits.check(Conn(ctx, "stranger-far", registered=False, source="203.0.113.9"), ping())
