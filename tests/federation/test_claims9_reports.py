"""docs/security.md, Federation, "Known limits": a relay is trusted for the delivery reports it
sends back, but "reports are accepted only from the first hop of the envelope's route". The
relay tests show reports coming back the right way; nothing sent one from another peer. Here a
configured peer that is not the route's first hop reports on alice's envelope: refused
``invalid``, and the delivery row does not move, while the first hop's report settles it."""

from __future__ import annotations

from sonet.core import limits
from sonet.core.federation_api import Push, PushResult, Report, Transit
from tests.node.conftest import StartNode
from tests.node.kit import wall_ms

from .net import ALPHA, ask, deliveries, new_key, peer_link, pin, queue_at, tracked

DELTA, EPSILON = "delta.example", "epsilon.example"


def _report(item_id: bytes, origin: str, outcome: str) -> Push:
    report = Report(id=item_id, account=f"rita@{DELTA}", device=1, outcome=outcome, at=wall_ms())
    return Push(request=1, items=(Transit(origin=origin, dest=ALPHA, hops=limits.MAX_HOPS, envelope=None, report=report),))


async def test_only_the_first_hop_of_the_route_may_report_on_an_envelope(start_node: StartNode) -> None:
    alpha = await start_node(name=ALPHA, registration="open")
    alice = await alpha.enroll("alice")
    delta, epsilon = new_key(), new_key()
    await pin(alpha, DELTA, fingerprint=delta.public.fingerprint)  # the route to rita: direct (down: nothing is pushed)
    await pin(alpha, EPSILON, fingerprint=epsilon.public.fingerprint)  # another configured peer
    item = tracked(alpha, alice, f"rita@{DELTA}")
    await queue_at(alpha, item)
    assert item.tracking is not None
    # alpha hands the envelope on (to delta, as a relay would take it: no final outcome yet)
    async with alpha.store() as store:
        [queued] = await store.outbox(DELTA, limit=10, max_bytes=1 << 20, now=wall_ms())
        await store.outbox_done(DELTA, [queued.seq], now=wall_ms())
    [row] = await deliveries(alpha, alice, item)
    assert row.state == "queued"

    for origin in (EPSILON, DELTA):  # not the route's first hop, even claiming to speak for delta
        async with peer_link(alpha, epsilon, EPSILON) as link:
            assert await ask(link, _report(item.tracking.id, origin, "mailbox_full")) == PushResult(request=1, outcomes=("invalid",))
    [row] = await deliveries(alpha, alice, item)
    assert (row.state, row.code) == ("queued", "")

    async with peer_link(alpha, delta, DELTA) as link:  # the first hop
        assert await ask(link, _report(item.tracking.id, DELTA, "ok")) == PushResult(request=1, outcomes=("ok",))
    [row] = await deliveries(alpha, alice, item)
    assert row.state == "accepted"
