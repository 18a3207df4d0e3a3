"""Review of round 9 (rev9): the per-device request cap (node/client_limits.py
``DEVICE_REQUESTS``, a3047f7) has the per-connection cap's rate (500 a second after 1000), but is
shared by all the device's connections. ``REQUESTS`` is sized for one connection ("stays above
twice ENVELOPES: a bot sending one message per batch at full speed is not refused"), and
723920c made the Ack of what a connection delivered free of ``ACK_IDS`` ("a device receiving
fast is never slowed"). An Ack refused by any cap closes its connection (an Ack has no answer):
everything in flight on it comes again on the next one. An Ack only of what its connection
delivered is now counted by neither the device's nor the account's request cap."""

from __future__ import annotations

import os

from sonet.core.client_api import Ack
from sonet.node.client_checks import RequestError
from sonet.node.client_limits import ENVELOPES, REQUESTS, ClientLimits

from .test_client_limits import Clock, Conn, Ctx, batch

SECONDS = 120
SENDS_PER_S = int(ENVELOPES.per_second)  # the bot's full documented rate, one message a batch
DELIVERIES_PER_S = 320  # messages arriving one at a time, each its own Deliver frame, acked


async def test_a_device_sending_at_full_rate_can_still_acknowledge_what_it_is_delivered() -> None:
    assert SENDS_PER_S < REQUESTS.per_second and DELIVERIES_PER_S < REQUESTS.per_second  # each connection is within its own cap
    clock = Clock()
    limits = ClientLimits()
    ctx = Ctx(clock)
    sending, live = Conn(ctx, "dev-bot"), Conn(ctx, "dev-bot")
    refused_acks = 0
    for tick in range(SECONDS * 10):  # 100 ms steps
        for _ in range(SENDS_PER_S // 10):
            await limits.check(sending, batch(sealed=1))  # type: ignore[arg-type]
        for _ in range(DELIVERIES_PER_S // 10):
            delivered = os.urandom(16)
            live.in_flight.add(delivered)
            try:
                await limits.check(live, Ack(ids=(delivered,)))  # type: ignore[arg-type]
            except RequestError:
                refused_acks += 1  # on a real connection: closed, what was in flight comes again
            live.in_flight.discard(delivered)
        clock.ms += 100
    assert refused_acks == 0, f"{refused_acks} acknowledgements of delivered envelopes refused in {SECONDS} s"
